"""Models by name (vitphase_lib.loading): timm ViTs, local checkpoints and the errors."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file
from timm.models.vision_transformer import VisionTransformer

from vitphase_lib.io import sha256_file
from vitphase_lib.loading import (UnknownModelError, load_model, load_timm_model, meta_model,
                                  weights_fingerprint)
from vitphase_lib.models import UnsupportedModelError
from vitphase_lib.zoo import CheckpointError

NAME = "vit_small_patch16_224"


@pytest.fixture(scope="module")
def random_small():
    return load_timm_model(NAME, pretrained=False, seed=3)


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    different = [k for k in sa if not torch.equal(sa[k], sb[k])]
    assert not different, different


@pytest.mark.parametrize("name", ["not_a_model_xyz", "vit_tiny_patch3_999", "nonexistent.weights"])
def test_unknown_model_name(name):
    with pytest.raises(UnknownModelError, match="unknown model") as info:
        load_model(name, pretrained=False)
    assert "mini-s" in str(info.value)  # the message lists the zoo


def test_non_vit_timm_model():
    with pytest.raises(UnsupportedModelError, match="not a timm VisionTransformer"):
        load_timm_model("resnet18", pretrained=False)


def test_random_timm_vit(random_small):
    loaded = random_small
    assert isinstance(loaded.model, VisionTransformer)
    assert loaded.name == NAME and loaded.kind == "timm"
    assert loaded.fingerprint == "random-init-seed-3"
    assert "random" in loaded.source
    assert not loaded.model.training
    assert loaded.model.embed_dim == 384 and len(loaded.model.blocks) == 12
    with torch.inference_mode():
        logits = loaded.model(torch.randn(1, 3, 224, 224))
    assert logits.shape == (1, 1000) and torch.isfinite(logits).all()


def test_random_init_depends_on_the_seed():
    tiny = "vit_tiny_patch16_224"
    a = load_timm_model(tiny, pretrained=False, seed=3)
    again = load_timm_model(tiny, pretrained=False, seed=3)
    assert_same_weights(again.model, a.model)
    other = load_timm_model(tiny, pretrained=False, seed=4)
    assert not torch.equal(other.model.pos_embed, a.model.pos_embed)
    assert other.fingerprint != a.fingerprint


@pytest.mark.parametrize("fmt", ["safetensors", "pth"])
def test_local_checkpoint_gives_identical_weights(tmp_path, random_small, fmt):
    state = {k: v.detach().clone().contiguous() for k, v in random_small.model.state_dict().items()}
    path = tmp_path / f"weights.{fmt}"
    if fmt == "safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)
    # seed 0 would initialise different weights: the file must be what is loaded
    loaded = load_model(NAME, checkpoint=path)
    assert_same_weights(loaded.model, random_small.model)
    assert loaded.fingerprint == sha256_file(path)
    assert str(path) in loaded.source
    assert not loaded.model.training


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_timm_model(NAME, checkpoint=tmp_path / "missing.safetensors")


@pytest.mark.parametrize("name", [None, 123, ["vit_small_patch16_224"]])
def test_non_string_name(name):
    with pytest.raises(TypeError, match="must be a string"):
        load_model(name)


def test_checkpoint_folder_gives_the_file_inside(tmp_path, random_small):
    """A Hugging Face snapshot folder (model.safetensors inside) works like the file."""
    state = {k: v.detach().clone().contiguous() for k, v in random_small.model.state_dict().items()}
    save_file(state, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text("{}")
    loaded = load_model(NAME, checkpoint=tmp_path)
    assert_same_weights(loaded.model, random_small.model)
    assert loaded.fingerprint == sha256_file(tmp_path / "model.safetensors")


def test_checkpoint_folder_with_several_files_is_ambiguous(tmp_path):
    for stem in ("a", "b"):
        (tmp_path / f"{stem}.pth").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="2 weights files"):
        load_timm_model(NAME, checkpoint=tmp_path)


def test_truncated_or_foreign_checkpoint_says_which_file(tmp_path, random_small):
    state = {k: v.detach().clone().contiguous() for k, v in random_small.model.state_dict().items()}
    good = tmp_path / "good.safetensors"
    save_file(state, str(good))
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated.safetensors could not be loaded"):
        load_timm_model(NAME, checkpoint=truncated)
    with pytest.raises(CheckpointError, match="could not be loaded into deit_tiny_patch16_224"):
        load_timm_model("deit_tiny_patch16_224", checkpoint=good)  # ViT-S weights, ViT-Ti model


def test_offline_without_weights_says_what_to_download_and_where_to_put_it(tmp_path):
    """A real offline run (HF_HUB_OFFLINE, empty cache): the error names the download and the
    'checkpoints' parameter."""
    import os
    import subprocess
    import sys
    code = ("from vitphase_lib.loading import load_timm_model, WeightsUnavailableError\n"
            "try:\n    load_timm_model('deit_tiny_distilled_patch16_224', pretrained=True)\n"
            "except WeightsUnavailableError as e:\n    print(e)\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
           "TORCH_HOME": str(tmp_path / "torch")}
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    message = run.stdout
    assert "https://huggingface.co/timm/deit_tiny_distilled_patch16_224.fb_in1k" in message
    assert "checkpoints" in message and "could not be downloaded" in message


# --------------------------------------------------------------------------- zoo checkpoints
def random_zoo_checkpoint(path, name="tiny-s", seed=7):
    """A safetensors file of ``name``'s architecture with random weights (not the shipped ones)."""
    from vitphase_lib.models import ALL_MINI_CONFIGS, build_mini_vit
    torch.manual_seed(seed)
    model = build_mini_vit(ALL_MINI_CONFIGS[name]).eval()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return model


def test_a_checkpoint_for_a_zoo_model_is_what_is_loaded(tmp_path):
    path = tmp_path / "tiny-s-mine.safetensors"
    mine = random_zoo_checkpoint(path)
    shipped = load_model("tiny-s")
    loaded = load_model("tiny-s", checkpoint=path)
    assert_same_weights(loaded.model, mine)
    assert loaded.fingerprint == sha256_file(path) != shipped.fingerprint
    assert loaded.source == f"local checkpoint {path}" and loaded.kind == "zoo"
    assert not loaded.model.training
    folder = load_model("tiny-s", checkpoint=tmp_path)  # the folder holding the file
    assert folder.fingerprint == loaded.fingerprint


def test_a_bad_zoo_checkpoint_fails_loudly(tmp_path):
    good = tmp_path / "good.safetensors"
    random_zoo_checkpoint(good)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated.safetensors could not be loaded into tiny-s"):
        load_model("tiny-s", checkpoint=truncated)
    with pytest.raises(CheckpointError, match="could not be loaded into tiny-b"):
        load_model("tiny-b", checkpoint=good)  # tiny-s weights
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model("tiny-s", checkpoint=tmp_path / "missing.safetensors")
    torch.save({}, tmp_path / "weights.pth")
    with pytest.raises(CheckpointError, match="not a .safetensors file"):
        load_model("tiny-s", checkpoint=tmp_path / "weights.pth")


# --------------------------------------------------------------------------- suggestions
def suggested(message: str) -> list[str]:
    return message.split("Did you mean ")[1].split("?")[0].split(", ")


@pytest.mark.parametrize("typed, expected", [
    ("vit_bsae_patch16_224", "vit_base_patch16_224"),
    ("vit_bsae_patch16_224.augreg2_in21k_ft_in1k", "vit_base_patch16_224"),
    ("deit_smal_patch16_224", "deit_small_patch16_224"),
    ("tiny-x", "tiny-s"),  # tiny-b and tiny-l are as close
    ("mini-s-d25", "mini-s-d24"),
])
def test_an_unknown_name_suggests_the_closest_supported_names(typed, expected):
    with pytest.raises(UnknownModelError) as info:
        load_model(typed, pretrained=False)
    close = suggested(str(info.value))
    assert expected in close and len(close) <= 5
    assert not any(name.startswith(("convit", "crossvit", "resnet")) for name in close)  # not ViTs


def test_suggestions_are_ranked_by_edit_distance_and_bounded():
    from vitphase_lib.loading import closest_names, edit_distance, supported_names
    assert edit_distance("tiny-x", "tiny-s") == 1 and edit_distance("ab", "ba") == 2
    assert edit_distance("", "abc") == 3
    assert closest_names("tiny-x", ["tiny-l", "mini-s", "tiny-s", "tiny-b"]) == ["tiny-b", "tiny-l", "tiny-s"]
    assert closest_names("resnet18", supported_names()) == []  # nothing close: no suggestion
    names = supported_names()
    assert {"tiny-s", "mini-l", "vit_base_patch16_224", "deit_small_patch16_224"} <= set(names)
    assert not {"convit_base", "crossvit_15_dagger_408", "resnet18"} & set(names)


def test_an_unknown_pretrained_tag_names_the_closest_tags():
    with pytest.raises(UnknownModelError, match="no pretrained tag 'augreg_in21k_ft_in1kk'") as info:
        load_model("vit_small_patch16_224.augreg_in21k_ft_in1kk", pretrained=False)
    assert "vit_small_patch16_224.augreg_in21k_ft_in1k" in str(info.value)


def test_resolve_model_checks_names_and_architectures_without_weights(tmp_path):
    from vitphase_lib.loading import resolve_model
    assert resolve_model("tiny-s") == "zoo"
    assert resolve_model("vit_large_patch16_224") == "timm"  # built on the meta device: instant
    with pytest.raises(UnsupportedModelError, match="ResNet"):
        resolve_model("resnet18")
    with pytest.raises(UnknownModelError):
        resolve_model("tiny-x")
    with pytest.raises(CheckpointError, match="does not exist"):
        resolve_model("tiny-s", checkpoint=tmp_path / "missing.safetensors")


def test_the_fingerprint_without_loading_is_the_loaded_one(tmp_path, random_small):
    """A cache look-up asks for the fingerprint alone: it must be the one loading gives."""
    path = tmp_path / "mine.safetensors"
    random_zoo_checkpoint(path)
    save_file(random_small.model.state_dict(), str(tmp_path / "small.safetensors"))
    cases = [("tiny-s", None, True), ("tiny-s-hub-forced", None, True), ("tiny-s", path, True),
             (NAME, None, False), (NAME, tmp_path / "small.safetensors", False)]
    for name, checkpoint, pretrained in cases:
        loaded = load_model(name, checkpoint=checkpoint, pretrained=pretrained)
        assert weights_fingerprint(name, checkpoint, pretrained) == loaded.fingerprint, name
    assert weights_fingerprint(NAME) == f"timm-{NAME}-pretrained"  # nothing downloaded to say so
    with pytest.raises(UnknownModelError):
        weights_fingerprint("vit_smal_patch16_224")


@pytest.mark.parametrize("name", ["vit_small_patch16_224.augreg_in21k_ft_in1k", "vit_medium_patch16_gap_240",
                                  "deit_tiny_distilled_patch16_224", "eva02_tiny_patch14_224.mim_in22k"])
def test_a_meta_model_has_the_preprocessing_of_the_real_one(name):
    from timm.data import resolve_model_data_config
    real = load_timm_model(name, pretrained=False).model
    assert resolve_model_data_config(meta_model(name)) == resolve_model_data_config(real)
