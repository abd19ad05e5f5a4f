"""The vitphase command: argument errors and the zoo sub-commands that need no training."""
import pandas as pd
import pytest

from vitphase_lib import zoo
from vitphase_lib.cli import main


def test_unknown_zoo_model_exits_2_with_the_known_names(capsys):
    assert main(["zoo", "train", "--model", "mini-xl"]) == 2
    assert "mini-s" in capsys.readouterr().err


def test_verify_reports_a_missing_manifest(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(zoo, "SHIPPED_ZOO_DIR", tmp_path)
    assert zoo.verify(tmp_path) == [f"{tmp_path / 'manifest.json'} does not exist: no zoo is shipped"]


def test_subcommand_is_required():
    with pytest.raises(SystemExit):
        main([])


def test_notebooks_command_writes_paired_ipynb(capsys):
    assert main(["notebooks"]) == 0
    written = capsys.readouterr().out.split()
    assert written and all(path.endswith(".ipynb") for path in written)


# --------------------------------------------------------------------------- user errors
def truncated_zoo_checkpoint(folder):
    from safetensors.torch import save_file

    from vitphase_lib.models import TINY_ZOO, build_mini_vit
    good = folder / "good.safetensors"
    save_file({k: v.contiguous() for k, v in build_mini_vit(TINY_ZOO["tiny-s"]).state_dict().items()},
              str(good))
    truncated = folder / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    return truncated


@pytest.fixture
def no_analysis(monkeypatch):
    """Study.analysis and pe_scaling record their calls instead of computing."""
    from vitphase_lib.study import Study
    calls = []

    def analysis(self, name):
        calls.append(name)
        raise AssertionError(f"{name} analysed before every model was checked")
    monkeypatch.setattr(Study, "analysis", analysis)
    return calls


@pytest.mark.parametrize("settings, match", [
    (["checkpoints={tiny-s: TRUNCATED}"], "truncated.safetensors"),  # the shipped tiny-s is not used
    (["models=[tiny-s]", "checkpoints={tiny-l: TRUNCATED}"], "not in 'models'"),
    (["models=[tiny-s, resnet18]"], "ResNet is not a timm VisionTransformer"),
    (["models=[tiny-s, vit_bsae_patch16_224]"], "Did you mean vit_base_patch16_224"),
    (["models=[tiny-x]"], "Did you mean tiny-b, tiny-l, tiny-s"),
    (["models=5"], "parameter 'models' must be a list"),
    (["n_images=ten"], "parameter 'n_images' must be int"),
    (["n_imgaes=10"], "unknown parameter"),
    (["dataset"], "--set expects KEY=VALUE"),
])
def test_user_errors_are_one_message_with_exit_status_2(tmp_path, capsys, no_analysis, settings, match):
    truncated = truncated_zoo_checkpoint(tmp_path)
    argv = ["analyse", "--profile", "smoke", "--set", "models=[tiny-s]"]
    for setting in settings:
        argv += ["--set", setting.replace("TRUNCATED", str(truncated))]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("vitphase: error: ") and match in captured.err
    assert "Traceback" not in captured.err and captured.out == ""
    assert no_analysis == []  # refused before the first model's analysis


@pytest.mark.parametrize("argv, match", [
    (["analyse", "--profile", "nonexistent"], "no profile 'nonexistent'"),
    (["analyse", "--profile", "paper", "--set", "models=[vit_small_patch16_224]", "--set",
      "device=cpu", "--set", "dataset=/nonexistent/val"], "image folder /nonexistent/val does not exist"),
    (["book", "--profile", "smoke", "--no-html", "--set", "models=[tiny-x]"], "unknown model 'tiny-x'"),
    (["estimate", "--profile", "nonexistent"], "no profile 'nonexistent'"),
])
def test_every_command_reports_user_errors_as_a_message(capsys, no_analysis, argv, match):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("vitphase: error: ") and match in err and "Traceback" not in err


@pytest.mark.parametrize("jobs", ["0", "-1", "two"])
def test_book_refuses_a_number_of_jobs_below_one(capsys, jobs):
    with pytest.raises(SystemExit) as exit_:
        main(["book", "--jobs", jobs])
    assert exit_.value.code == 2 and "--jobs" in capsys.readouterr().err


def test_debug_shows_the_traceback(no_analysis):
    from vitphase_lib.loading import UnknownModelError
    with pytest.raises(UnknownModelError, match="tiny-x"):
        main(["--debug", "analyse", "--profile", "smoke", "--set", "models=[tiny-x]"])


def test_analyse_uses_the_checkpoint_named_for_a_zoo_model(tmp_path, monkeypatch, capsys):
    """What `vitphase analyse` hands to the analysis is the file's model, not the shipped one."""
    from safetensors.torch import save_file

    from vitphase_lib.io import sha256_file
    from vitphase_lib.models import TINY_ZOO, build_mini_vit
    from vitphase_lib.study import Study
    path = tmp_path / "mine.safetensors"
    save_file({k: v.contiguous() for k, v in build_mini_vit(TINY_ZOO["tiny-s"]).state_dict().items()},
              str(path))
    fingerprints = []

    def analysis(self, name):
        fingerprints.append(self.model(name).fingerprint)
        return {"summary": pd.DataFrame({"images": [1], "top1": [0.0]})}
    monkeypatch.setattr(Study, "analysis", analysis)
    monkeypatch.setattr(Study, "pe_scaling", lambda self, name: {})
    assert main(["analyse", "--profile", "smoke", "--set", "models=[tiny-s]", "--set", "variants=[]",
                 "--set", f"checkpoints={{tiny-s: {path}}}"]) == 0
    assert fingerprints == [sha256_file(path)]


def test_analyse_also_caches_the_variant_study(monkeypatch, capsys):
    """With variants, `vitphase analyse` computes what "Beyond the paper" reads: every variant and
    base on the variant settings, the retention tables of the seed and deepest models, and the
    variants' test top-1 (T1b)."""
    from vitphase_lib.study import Study
    calls = []

    def analysis(self, name):
        calls.append(("analysis", name, self.n_images))
        return {"summary": pd.DataFrame({"images": [1], "top1": [0.0]})}
    monkeypatch.setattr(Study, "analysis", analysis)
    monkeypatch.setattr(Study, "pe_scaling", lambda self, name: {})
    monkeypatch.setattr(Study, "retention", lambda self, name: calls.append(("retention", name, self.n_images)))
    monkeypatch.setattr(Study, "model_inventory", lambda self: calls.append(("top-1", *self.models)))
    monkeypatch.setattr(Study, "variant_inventory", lambda self: calls.append(("top-1", *self.variants)))
    assert main(["analyse", "--profile", "smoke", "--set", "models=[tiny-s]",
                 "--set", "variants=[tiny-s-d4, tiny-s-seed1, tiny-s-seed2]",
                 "--set", "variant_settings={n_images: 64}"]) == 0
    assert calls == [("analysis", "tiny-s", 256), ("top-1", "tiny-s"),
                     *(("analysis", m, 64) for m in ("tiny-s", "tiny-s-d4", "tiny-s-seed1", "tiny-s-seed2")),
                     *(("retention", m, 64) for m in ("tiny-s", "tiny-s-seed1", "tiny-s-seed2", "tiny-s-d4")),
                     ("top-1", "tiny-s-d4", "tiny-s-seed1", "tiny-s-seed2")]
    assert "the variant study: analysed 4 models (64 images each)" in capsys.readouterr().out
