"""The shipped zoo: where its checkpoints live, how they are trained, verified and loaded.

The default profile's mini zoo is shipped in ``zoo/``, the smoke profile's tiny zoo in
``zoo/tiny/``, each folder with its own ``manifest.json``. The tiny zoo trains in seconds, but it
is shipped all the same: training amplifies last-bit differences between CPUs that portable
numerics do not remove everywhere (tiny-l reached 35.3% top-1 on one machine and 35.5% on an AMD
EPYC, under ``scripts/portable.sh`` both times), and the smoke chapters nbval compares must not
depend on the machine CI runs on. The analyses of fixed weights do not drift that way."""
from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from .io import sha256_file
from .errors import VitphaseError
from .models import ALL_MINI_CONFIGS, TINY_ZOO, VARIANTS, MiniViTConfig, build_mini_vit
from .numerics import portable_requested
from .train import MonitorSpec, TrainConfig

REPO_ROOT = Path(__file__).resolve().parent.parent
SHIPPED_ZOO_DIR = REPO_ROOT / "zoo"


def shipped_dir(name: str) -> Path:
    """Where a zoo model is shipped: ``zoo/tiny/`` for the smoke profile's tiny zoo, else
    ``zoo/``."""
    base = VARIANTS[name].base if name in VARIANTS else name
    return SHIPPED_ZOO_DIR / "tiny" if base in TINY_ZOO else SHIPPED_ZOO_DIR


class CheckpointError(VitphaseError, RuntimeError):
    """A checkpoint file is missing, truncated, altered or does not fit its model."""


def cache_root() -> Path:
    """Training state and cached results. Runs with portable numerics (``make test``) keep theirs
    in a subfolder: their tables (and training runs) differ in the last bits from a normal run's,
    and neither may be read as the other's."""
    root = Path(os.environ.get("VITPHASE_CACHE", Path.home() / ".cache" / "vitphase"))
    return root / "portable-numerics" if portable_requested() else root


def training_dir(name: str) -> Path:
    """Where in-progress training state lives (outside the work tree)."""
    return cache_root() / "zoo-training" / name


# The recipe of each zoo model. Epoch counts fit the 4-hour CPU budget (README, "Mini zoo").
ZOO_TRAINING: dict[str, TrainConfig] = {
    "mini-s": TrainConfig(epochs=15, batch_size=128, lr=2e-3, crop_padding=1),
    "mini-b": TrainConfig(epochs=12, batch_size=128, lr=2e-3, crop_padding=1),
    # mini-L: batch 64 gives twice the steps of 128 at the same images/s; 11 epochs fit the
    # budget at the speed this machine trained the zoo (README, "Mini zoo")
    "mini-l": TrainConfig(epochs=11, batch_size=64, lr=1.4e-3, crop_padding=1),
    # the smoke profile's tiny zoo: 3 000 images, a few seconds each
    **{name: TrainConfig(epochs=3, batch_size=64, lr=2e-3, n_train=3000, n_test=1000,
                         warmup_epochs=0.3, snapshot_fractions=(1.0,), threads=1)
       for name in ("tiny-s", "tiny-b", "tiny-l")},
}
# the variant zoo: the base's recipe (and seed, unless the variant changes it); snapshots at 25%
# and 100% of training are shipped, the monitor logs the rest of the dynamics
# and one thread each, so that two variants train side by side on a 2-core machine
ZOO_TRAINING.update({
    name: replace(ZOO_TRAINING[variant.base], snapshot_fractions=(0.25, 1.0), threads=1,
                  **dict(variant.recipe))
    for name, variant in VARIANTS.items()})


def monitor_spec(name: str) -> MonitorSpec:
    """The training-time monitor every zoo model trains with (its log ships with the weights)."""
    small = shipped_dir(name) == SHIPPED_ZOO_DIR / "tiny"
    return MonitorSpec(probe_images=256, aci_images=16) if small else MonitorSpec()


def shown_path(path: Path) -> str:
    """``path`` relative to the repository when it is inside it (what to type at its root)."""
    path = Path(path).resolve()
    return path.relative_to(REPO_ROOT).as_posix() if path.is_relative_to(REPO_ROOT) else str(path)


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
                f"manifest says {expected_sha256[:12]}.... Restore it (`git checkout -- "
                f"{shown_path(path)}`) or re-train with `vitphase zoo train --model {config.name}` "
                "and ship it again (README, 'Mini zoo').")
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


def shipped_manifest(target: Path = SHIPPED_ZOO_DIR) -> dict:
    """``target``'s ``manifest.json`` (``{"models": {}}`` when none is shipped there). A model
    without a ``numerics`` entry was trained with native numerics (before the field existed)."""
    path = target / "manifest.json"
    return json.loads(path.read_text()) if path.is_file() else {"models": {}}


def total_steps(name: str) -> int:
    """Optimizer steps of a zoo model's full recipe (as ``Trainer`` counts them)."""
    recipe = ZOO_TRAINING[name]
    return -(-(recipe.n_train or 60_000) // recipe.batch_size) * recipe.epochs


def idle_training_seconds(log: list[dict], epochs: int) -> float | None:
    """Training time on an idle machine, estimated as ``epochs`` x the fastest complete epoch of
    the per-epoch log (evaluation and monitor included; epochs resumed mid-way are left out). The
    recorded ``train_seconds`` times the optimizer steps alone, but also counts the time the run
    was paused or shared its CPU cores with other work."""
    complete = [entry["seconds"] for entry in log if not entry.get("partial_epoch_resumed")]
    return epochs * min(complete) if complete else None


def training_record(name: str) -> dict:
    """What is known of a zoo model's training: config, recipe, per-epoch log and snapshots
    (each with the test top-1 measured on the stored weights), from the shipped manifest or, when
    the model is not shipped, from its local training run."""
    shipped = shipped_manifest(shipped_dir(name))["models"].get(name)
    if shipped is not None:
        return {**shipped, "origin": "shipped"}
    return {**_local_record(name), "origin": "local"}


def monitor_log(name: str):
    """The training-time monitor log of a zoo model (a table, see ``monitor.read_log``): the
    shipped one (sha256-checked) or, for a model not shipped, its local training run's; None
    when it trained without a monitor."""
    from .monitor import read_log
    folder = shipped_dir(name)
    shipped = shipped_manifest(folder)["models"].get(name)
    if shipped is not None:
        entry = shipped.get("monitor_log")
        if entry is None:
            return None
        path = folder / entry["file"]
        if not path.is_file():
            raise CheckpointError(f"{path}, the monitor log of {name} named in its manifest, is missing")
        if sha256_file(path) != entry["sha256"]:
            raise CheckpointError(f"{path} does not match the sha256 of its manifest entry")
        return read_log(path)
    path = training_dir(name) / "monitor.csv"
    return read_log(path) if path.is_file() else None


def ship(names: list[str], target: Path | None = None) -> dict:
    """Copy finished training runs' snapshots into ``target`` (by default each model's
    :func:`shipped_dir`) and write the folder's ``manifest.json``; returns the models' entries."""
    if target is None:
        entries = {}
        for folder in dict.fromkeys(shipped_dir(name) for name in names):
            group = [name for name in names if shipped_dir(name) == folder]
            entries.update(ship(group, folder)["models"])
        return {"models": entries}
    import shutil

    from .data import load_fashion_mnist
    from .io import atomic_write_json
    target.mkdir(parents=True, exist_ok=True)
    manifest = shipped_manifest(target)
    checksum = load_fashion_mnist("train").checksum
    for name in names:
        record = _local_record(name)
        recipe = ZOO_TRAINING[name]
        if record["steps_done"] < total_steps(name):
            raise RuntimeError(f"{name} has trained {record['steps_done']} of {total_steps(name)} steps; "
                               "finish it with `vitphase zoo train` before shipping")
        for snapshot in record["snapshots"]:
            source = training_dir(name) / snapshot["file"]
            if sha256_file(source) != snapshot["sha256"]:
                raise CheckpointError(f"{source} does not match its recorded sha256")
            shutil.copyfile(source, target / snapshot["file"])
        final = record["snapshots"][-1]
        monitor = {}
        if (training_dir(name) / "monitor.csv").is_file():
            log_name = f"{name}-monitor.csv"
            shutil.copyfile(training_dir(name) / "monitor.csv", target / log_name)
            monitor = {"monitor_log": {"file": log_name, "sha256": sha256_file(target / log_name)},
                       "monitor_seconds": record["monitor_seconds"]}
        manifest["models"][name] = {
            "config": record["config"], "train": record["train"], "seed": recipe.seed,
            "data": {"dataset": "fashion-mnist", "train_sha256": checksum},
            "epochs": recipe.epochs, "test_top1": final["test_top1"],
            "train_seconds": record["train_seconds"],  # optimizer steps; pauses and a shared CPU included
            "idle_train_seconds_estimate": idle_training_seconds(record["log"], recipe.epochs),
            "log": record["log"],
            "snapshots": [{k: s[k] for k in ("step", "epoch", "fraction", "file", "test_top1", "sha256")}
                          for s in record["snapshots"]],
            "steps_done": record["steps_done"],
            # how the training's kernels were pinned (README, 'Portable numerics')
            "numerics": "portable" if portable_requested() else "native", **monitor}
    atomic_write_json(manifest, target / "manifest.json")
    return manifest


def _local_record(name: str) -> dict:
    state_path = training_dir(name) / "state.pt"
    if not state_path.is_file():
        raise CheckpointError(
            f"{name} has no training run at {state_path}: it is not trained locally. Train it "
            f"with `vitphase zoo train --model {name}` (for the tiny zoo, training and shipping "
            "both run under `bash scripts/portable.sh`, whose runs live in a cache folder of "
            "their own).")
    state = torch.load(state_path, map_location="cpu", weights_only=False)["state"]
    return {"config": ALL_MINI_CONFIGS[name].to_dict(), "train": ZOO_TRAINING[name].to_dict(),
            "log": state["log"], "snapshots": state["snapshots"], "steps_done": state["step"],
            "train_seconds": state["train_seconds"], "monitor_seconds": state.get("monitor_seconds", 0.0)}


def verify(target: Path | None = None) -> list[str]:
    """Check every shipped file against its manifest (by default in ``zoo/`` and ``zoo/tiny/``);
    returns the problems found."""
    if target is None:
        return verify(SHIPPED_ZOO_DIR) + verify(SHIPPED_ZOO_DIR / "tiny")
    manifest_path = target / "manifest.json"
    if not manifest_path.is_file():
        return [f"{manifest_path} does not exist: no zoo is shipped"]
    problems = []
    for name, entry in json.loads(manifest_path.read_text())["models"].items():
        for snapshot in entry["snapshots"]:
            try:
                load_weights_file(target / snapshot["file"], ALL_MINI_CONFIGS[name], snapshot["sha256"])
            except CheckpointError as error:
                problems.append(str(error))
    return problems
