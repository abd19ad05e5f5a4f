"""The vitphase command: argument errors and the zoo sub-commands that need no training."""
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
