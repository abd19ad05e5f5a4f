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


def test_dataset_and_model_kinds_must_match(tmp_path):
    study = Study.from_profile("smoke", models=["vit_small_patch16_224"], pretrained=False)
    with pytest.raises(ValueError, match="ImageNet-style folder"):
        study.evaluation_set("vit_small_patch16_224")
    with pytest.raises(ValueError, match="dataset' is not set"):
        Study.from_profile("paper", pretrained=False).evaluation_set("vit_small_patch16_224")
