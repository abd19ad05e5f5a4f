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
])
def test_wrong_parameter_types_are_rejected_with_the_name(field, value):
    with pytest.raises(TypeError, match=field):
        Study.from_profile("smoke", **{field: value})


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
