"""pyproject.toml lists every package of vitphase_lib: a subpackage left out would be missing
from a non-editable install (`pip install .`) while every test of the checkout passes."""
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

REPO = Path(__file__).resolve().parent.parent


def test_every_subpackage_is_listed_in_pyproject():
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(init.parent.relative_to(REPO).parts) for init in (REPO / "vitphase_lib").rglob("__init__.py")}
    assert found == listed, (f"in the tree but not listed: {sorted(found - listed)}; "
                             f"listed but gone: {sorted(listed - found)}")
