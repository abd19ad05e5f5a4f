"""Notebook sources, their generated .ipynb, and the parameter-cell handling."""
from pathlib import Path

import nbformat

from vitphase_lib.pipeline import generate_ipynb, hide_injected_parameters, notebook_sources

RECORDED_SMOKE = Path(__file__).parent / "notebooks"


def test_every_chapter_has_exactly_one_parameters_cell_with_profile(tmp_path):
    sources = notebook_sources()
    assert len(sources) >= 3
    for source in sources:
        notebook = nbformat.read(generate_ipynb(source, tmp_path), as_version=4)
        tagged = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, source.name
        assert tagged[0].source.startswith('profile = "default"'), source.name


def test_every_chapter_has_a_checked_output_cell(tmp_path):
    for source in notebook_sources():
        notebook = nbformat.read(generate_ipynb(source, tmp_path), as_version=4)
        assert any(c.source.startswith("# NBVAL_CHECK_OUTPUT") for c in notebook.cells), source.name


def test_recorded_smoke_notebooks_run_the_current_sources(tmp_path):
    """nbval re-runs tests/notebooks/*.ipynb, so they must hold the code of notebooks/*.py: after a
    change to a chapter, re-record them with `make smoke-notebooks`."""
    sources = notebook_sources()
    assert sorted(p.stem for p in RECORDED_SMOKE.glob("*.ipynb")) == [s.stem for s in sources]
    for source in sources:
        expected = [c.source for c in nbformat.read(generate_ipynb(source, tmp_path), as_version=4).cells]
        recorded = [c.source for c in nbformat.read(RECORDED_SMOKE / f"{source.stem}.ipynb", as_version=4).cells
                    if "injected-parameters" not in c.metadata.get("tags", [])]
        assert recorded == expected, f"{source.name}: re-record with `make smoke-notebooks`"


def test_injected_parameters_are_removed_and_parameters_folded(tmp_path):
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell('profile = "default"', metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell('profile = "smoke"', metadata={"tags": ["injected-parameters"]}),
        nbformat.v4.new_code_cell("x = 1")])
    path = tmp_path / "n.ipynb"
    nbformat.write(notebook, path)
    hide_injected_parameters(path)
    cells = nbformat.read(path, as_version=4).cells
    assert cells[0].metadata.tags == ["parameters", "hide-cell"]
    assert cells[1].metadata.tags == ["injected-parameters", "remove-cell"]
    assert cells[2].metadata.get("tags", []) == []


def test_duplicate_inline_scripts_are_dropped_once(tmp_path):
    from vitphase_lib.pipeline import drop_duplicate_inline_scripts
    page = tmp_path / "p.html"
    page.write_text("<head>\n<script>const A = 1;</script>\n<script src='x.js'></script>\n"
                    "<script>const A = 1;</script>\n<script>const B = 2;</script>\n</head>\n")
    drop_duplicate_inline_scripts(page)
    assert page.read_text() == ("<head>\n<script>const A = 1;</script>\n<script src='x.js'></script>\n"
                                "<script>const B = 2;</script>\n</head>\n")
