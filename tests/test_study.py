"""Study: parameter validation, profiles, notebook parameters."""
import pytest

from vitphase_lib.study import PROFILES_DIR, Study


def test_every_profile_loads_and_validates():
    names = sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))
    assert names == ["default", "paper", "smoke"]
    for name in names:
        study = Study.from_profile(name)
        assert study.profile == name
        assert isinstance(study.models, tuple) and study.models


def test_smoke_profile_uses_the_tiny_zoo():
    assert Study.from_profile("smoke").models == ("tiny-s", "tiny-b", "tiny-l")


@pytest.mark.parametrize("field, value", [
    ("n_images", "100"), ("n_images", 1.5), ("n_images", True), ("batch_size", "8"),
    ("models", "mini-s"), ("models", ["mini-s", 3]), ("pe_alphas", ["a"]), ("seed", None),
    ("device", 0), ("checkpoints", []),
    ("pca_max_images", "512"), ("pca_max_images", 1.5), ("pca_max_images", True),
    ("pca_max_images", 0), ("aci_max_images", -1),
    ("isi_thresholds", "0.004"), ("isi_thresholds", [0.02, 0.004]), ("isi_thresholds", [0.004]),
    ("isi_thresholds", [-0.1, 0.02]), ("isi_thresholds", [True, 0.02]),
    ("tradeoff_fraction", "0.95"), ("tradeoff_fraction", 0.0), ("tradeoff_fraction", 1.5),
    ("tradeoff_fraction", True),
])
def test_wrong_parameter_types_are_rejected_with_the_name(field, value):
    with pytest.raises(TypeError, match=field):
        Study.from_profile("smoke", **{field: value})


def test_thresholds_and_fraction_are_configurable():
    study = Study.from_profile("smoke", isi_thresholds=[0.001, 0.05], tradeoff_fraction=0.9)
    assert study.isi_thresholds == (0.001, 0.05) and study.tradeoff_fraction == 0.9
    assert Study.from_profile("smoke").isi_thresholds == (0.004, 0.02)  # the paper's


def test_bad_dtype_is_rejected():
    with pytest.raises(ValueError, match="dtype"):
        Study.from_profile("smoke", dtype="float8")


def test_unknown_parameter_is_an_error_not_ignored():
    with pytest.raises(TypeError, match="n_imgaes"):
        Study.from_profile("smoke", n_imgaes=10)


def test_unknown_profile_names_the_known_ones():
    with pytest.raises(FileNotFoundError, match="smoke"):
        Study.from_profile("nonexistent")


def test_from_notebook_keeps_profile_values_for_none_and_applies_overrides():
    study = Study.from_notebook("smoke", {"seed": 3}, n_images=100, models=None)
    assert study.n_images == 100
    assert study.seed == 3
    assert study.models == Study.from_profile("smoke").models
    with pytest.raises(TypeError, match="overrides"):
        Study.from_notebook("smoke", overrides=[("seed", 3)])


def test_alphas_are_floats_and_models_a_tuple():
    study = Study.from_profile("smoke", pe_alphas=[0, 1], models=["tiny-s"])
    assert study.pe_alphas == (0.0, 1.0) and study.models == ("tiny-s",)


def test_paper_profile_runs_on_an_image_folder_with_random_init_vits(tmp_path):
    from vitphase_lib.imagefolder import make_fake_imagenet_folder
    folder = make_fake_imagenet_folder(tmp_path / "val", n_classes=3, per_class=4)
    study = Study.from_profile("paper", dataset=str(folder), models=["vit_small_patch16_224"],
                               pretrained=False, n_images=6, n_probe_fit=3, n_probe_score=3,
                               batch_size=3, device="cpu", dtype="float32", num_workers=0,
                               pe_alphas=[0.0, 1.0], infox_dims=2, progress=False)
    tables = study.analysis("vit_small_patch16_224")
    per_layer = tables["per_layer"]
    assert per_layer.layer.tolist() == ["raw", "pe"] + [str(i) for i in range(1, 13)] + ["head"]
    assert (per_layer.images == 6).all()
    assert per_layer.centered_similarity.between(-1 / 195 - 1e-6, 1).all()
    assert 0 < tables["summary"].pe_dominance_ratio.iloc[0] < 100
    assert set(tables) == {"per_layer", "summary", "attention", "collapse", "scrambling", "probes"}
    assert tables["attention"].block.tolist() == list(range(1, 13))
    assert set(tables["collapse"].feature) == {"cls", "mean"}
    assert tables["scrambling"].layer.tolist() == per_layer.layer.tolist()
    scaled = study.pe_scaling("vit_small_patch16_224")
    assert sorted(scaled["top1"].alpha) == list(study.pe_alphas)
    # a chapter that reads these tables back from the cache never builds the model
    again = Study.from_parameters(**study.describe(), refresh=False, progress=False)
    assert again.analysis("vit_small_patch16_224")["per_layer"].equals(per_layer)
    again.pe_scaling("vit_small_patch16_224")
    assert not again._models


def test_dataset_and_model_kinds_must_match(tmp_path):
    study = Study.from_profile("smoke", models=["vit_small_patch16_224"], pretrained=False)
    with pytest.raises(ValueError, match="ImageNet-style folder"):
        study.evaluation_set("vit_small_patch16_224")
    with pytest.raises(ValueError, match="dataset' is not set"):
        Study.from_profile("paper", pretrained=False).evaluation_set("vit_small_patch16_224")


# --------------------------------------------------------------------------- checks before computing
def test_models_must_be_a_list_with_the_message_meant_for_it():
    from vitphase_lib.errors import ParameterError
    for value in (5, None, [], ["tiny-s", "tiny-s"]):
        with pytest.raises(ParameterError, match="parameter 'models'"):
            Study.from_profile("smoke", models=value)


def test_parameter_errors_are_still_type_and_value_errors():
    from vitphase_lib.errors import ParameterError, VitphaseError
    with pytest.raises(ParameterError) as info:
        Study.from_profile("smoke", dtype="float8")  # raised as a ValueError by PassConfig
    assert isinstance(info.value, TypeError) and isinstance(info.value, ValueError)
    assert isinstance(info.value, VitphaseError)


def test_a_checkpoint_entry_for_a_model_not_in_models_is_an_error(tmp_path):
    from vitphase_lib.errors import ParameterError
    with pytest.raises(ParameterError, match="'tiny-l', which is not in 'models'"):
        Study.from_profile("smoke", models=["tiny-s"], checkpoints={"tiny-l": str(tmp_path / "w")})
    with pytest.raises(ParameterError, match="must be the path"):
        Study.from_profile("smoke", models=["tiny-s"], checkpoints={"tiny-s": 3})


def test_a_zoo_checkpoint_is_loaded_not_the_shipped_weights(tmp_path):
    from safetensors.torch import save_file

    from vitphase_lib.io import sha256_file
    from vitphase_lib.models import TINY_ZOO, build_mini_vit
    from vitphase_lib.zoo import CheckpointError
    good = tmp_path / "tiny-s.safetensors"
    save_file({k: v.contiguous() for k, v in build_mini_vit(TINY_ZOO["tiny-s"]).state_dict().items()},
              str(good))
    study = Study.from_profile("smoke", models=["tiny-s"], checkpoints={"tiny-s": str(good)})
    study.check()
    assert study.model("tiny-s").fingerprint == sha256_file(good)
    assert study.model("tiny-s").source.startswith("local checkpoint")
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[:1000])
    broken = Study.from_profile("smoke", models=["tiny-s"], checkpoints={"tiny-s": str(truncated)})
    with pytest.raises(CheckpointError, match="truncated.safetensors"):
        broken.check()


def test_check_refuses_a_later_model_before_loading_the_first(tmp_path):
    from vitphase_lib.imagefolder import make_fake_imagenet_folder
    from vitphase_lib.models import UnsupportedModelError
    folder = make_fake_imagenet_folder(tmp_path / "val", n_classes=2, per_class=2)
    study = Study.from_profile("paper", dataset=str(folder), pretrained=False, device="cpu",
                               models=["vit_base_patch32_224", "resnet18"])
    with pytest.raises(UnsupportedModelError, match="ResNet"):
        study.check()
    assert study._models == {}  # no weights were loaded, no forward pass run


@pytest.mark.parametrize("overrides, error, match", [
    ({"dataset": "/nonexistent/val"}, "DataNotFoundError", "does not exist"),
    ({"dataset": None}, "ParameterError", "'dataset' is not set"),
    ({"models": ["vit_small_patch16_224", "tiny-s"]}, "ParameterError", "zoo model"),
    ({"models": ["vit_small_patch16_224", "vit_bsae_patch16_224"]}, "UnknownModelError",
     "vit_base_patch16_224"),
    ({"models": ["vit_small_patch16_224"], "checkpoints": {"vit_small_patch16_224": "/no/file"}},
     "CheckpointError", "does not exist"),
])
def test_check_finds_data_names_and_files_before_loading_weights(tmp_path, overrides, error, match):
    from vitphase_lib import data, errors, loading, zoo
    from vitphase_lib.imagefolder import make_fake_imagenet_folder
    classes = {"DataNotFoundError": data.DataNotFoundError, "ParameterError": errors.ParameterError,
               "UnknownModelError": loading.UnknownModelError, "CheckpointError": zoo.CheckpointError}
    folder = make_fake_imagenet_folder(tmp_path / "val", n_classes=2, per_class=2)
    parameters = {"dataset": str(folder), "models": ["vit_small_patch16_224"], **overrides}
    study = Study.from_profile("paper", pretrained=True, device="cpu", **parameters)
    with pytest.raises(classes[error], match=match):
        study.check()
    assert study._models == {}  # nothing downloaded or loaded


def test_check_finds_too_few_images():
    from vitphase_lib.errors import ParameterError
    with pytest.raises(ParameterError, match="lower n_images"):
        Study.from_profile("smoke", models=["tiny-s"], n_images=20_000).check()


@pytest.mark.parametrize("device, match", [("gpu", "not a torch device"),
                                           ("cuda", "no CUDA GPU is visible")])
def test_check_finds_an_unusable_device(device, match):
    import torch

    from vitphase_lib.errors import ParameterError
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ParameterError, match=match):
        Study.from_profile("smoke", models=["tiny-s"], device=device).check()


def test_inventory_of_a_zoo_model_with_a_checkpoint_reports_the_files_weights(tmp_path):
    import math

    from safetensors.torch import save_file

    from vitphase_lib.models import TINY_ZOO, build_mini_vit
    path = tmp_path / "tiny-b.safetensors"
    save_file({k: v.contiguous() for k, v in build_mini_vit(TINY_ZOO["tiny-b"]).state_dict().items()},
              str(path))
    study = Study.from_profile("smoke", checkpoints={"tiny-b": str(path)})
    inventory = study.model_inventory().set_index("model")
    assert inventory.loc["tiny-b", "source"] == f"local checkpoint {path}"
    assert math.isnan(inventory.loc["tiny-b", "recorded_top1"])  # no training record of this file
    assert inventory.loc["tiny-s", "test_top1"] == inventory.loc["tiny-s", "recorded_top1"]
    assert set(study.training_curves().model) == {"tiny-s", "tiny-l"}


def test_test_top1_is_measured_once_per_weights_and_checked_against_the_record(tmp_path, monkeypatch):
    from vitphase_lib import train
    monkeypatch.setenv("VITPHASE_CACHE", str(tmp_path))
    calls = []
    measure = train.evaluate_top1
    monkeypatch.setattr(train, "evaluate_top1", lambda model, data: calls.append(len(data)) or measure(model, data))
    study = Study.from_profile("smoke", models=["tiny-s"])
    first = study.model_inventory()
    assert study.model_inventory().equals(first) and calls == [1000]  # the second is a cache hit
    assert first.test_top1.iloc[0] == first.recorded_top1.iloc[0] and first.test_images.iloc[0] == 1000
    monkeypatch.setattr(train, "evaluate_top1", lambda model, data: 1.0)  # weights that changed
    with pytest.raises(RuntimeError, match="re-measured as 1.00%"):
        Study.from_profile("smoke", models=["tiny-s"], refresh=True).model_inventory()


def test_check_refuses_a_variant_that_has_not_finished_training(tmp_path, monkeypatch):
    from vitphase_lib import zoo
    monkeypatch.setattr(zoo, "training_record", lambda name: {"origin": "local", "steps_done": 35})
    study = Study.from_profile("smoke", models=["tiny-s"], variants=["tiny-s-d2"])
    with pytest.raises(ValueError, match="tiny-s-d2 has trained 35 of 141 steps"):
        study.check()
