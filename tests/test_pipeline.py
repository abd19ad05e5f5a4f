"""Notebook sources, their generated .ipynb, and the parameter-cell handling."""
import os
from pathlib import Path

import nbformat
import pytest

from vitphase_lib.pipeline import (build_book, generate_ipynb, notebook_sources, numbered_labels,
                                   tidy_executed_chapter)

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
    tidy_executed_chapter(path)
    cells = nbformat.read(path, as_version=4).cells
    assert cells[0].metadata.tags == ["parameters", "hide-cell"]
    assert cells[1].metadata.tags == ["injected-parameters", "remove-cell"]
    assert cells[2].metadata.tags == ["hide-input"]
    assert [c.id for c in cells] == ["cell-0", "injected-parameters", "cell-2"]


def test_code_is_folded_and_regression_checks_removed_from_the_page(tmp_path):
    """The book reads like a paper: code folded (outputs shown), the nbval check cells kept in the
    notebook but removed from the page, a cell's own tags respected, markdown untouched."""
    new = nbformat.v4
    cells = [new.new_markdown_cell("# Title"),
             new.new_code_cell("plot()"),
             new.new_code_cell("# NBVAL_CHECK_OUTPUT\nprint(1)"),
             new.new_code_cell("x = 1\n# NBVAL_CHECK_OUTPUT", metadata={"tags": ["hide-output"]}),
             new.new_code_cell("y = 2", metadata={"tags": ["remove-input"]})]
    for stem, code in (("02_chapter", ["hide-input"]), ("90_your_own_model", [])):
        path = tmp_path / f"{stem}.ipynb"
        nbformat.write(new.new_notebook(cells=cells), path)
        tidy_executed_chapter(path)
        tidied = nbformat.read(path, as_version=4).cells
        assert [c.metadata.get("tags", []) for c in tidied] == [
            [], code, ["remove-cell"], ["hide-output", "remove-cell"], ["remove-input"]], stem
        assert [c.source for c in tidied] == [c.source for c in cells]  # nbval still sees them


def test_cell_timestamps_are_dropped_and_the_run_record_kept(tmp_path):
    cell = nbformat.v4.new_code_cell("x = 1", metadata={
        "execution": {"iopub.status.busy": "2026-12-02T14:40:56Z"},
        "papermill": {"start_time": "2026-12-02T14:40:56", "end_time": "2026-12-02T14:40:57",
                      "duration": 0.5, "status": "completed", "exception": False}})
    notebook = nbformat.v4.new_notebook(cells=[cell], metadata={
        "papermill": {"end_time": "2026-12-02T14:41:00", "parameters": {"profile": "smoke"}}})
    path = tmp_path / "n.ipynb"
    nbformat.write(notebook, path)
    tidy_executed_chapter(path)
    tidied = nbformat.read(path, as_version=4)
    assert "execution" not in tidied.cells[0].metadata
    assert tidied.cells[0].metadata.papermill == {"status": "completed", "exception": False}
    assert tidied.metadata.papermill == notebook.metadata.papermill  # describe_build reads it


def test_generated_notebooks_have_the_same_cell_ids_each_time(tmp_path):
    """Re-recording a chapter must not rewrite every cell id (random by default in nbformat)."""
    source = notebook_sources()[0]
    first = nbformat.read(generate_ipynb(source, tmp_path / "a"), as_version=4)
    second = nbformat.read(generate_ipynb(source, tmp_path / "b"), as_version=4)
    assert [c.id for c in first.cells] == [c.id for c in second.cells]
    assert [c.id for c in first.cells] == [f"cell-{i}" for i in range(len(first.cells))]


def test_duplicate_inline_scripts_are_dropped_once(tmp_path):
    from vitphase_lib.pipeline import drop_duplicate_inline_scripts
    page = tmp_path / "p.html"
    page.write_text("<head>\n<script>const A = 1;</script>\n<script src='x.js'></script>\n"
                    "<script>const A = 1;</script>\n<script>const B = 2;</script>\n</head>\n")
    drop_duplicate_inline_scripts(page)
    assert page.read_text() == ("<head>\n<script>const A = 1;</script>\n<script src='x.js'></script>\n"
                                "<script>const B = 2;</script>\n</head>\n")


def test_progress_bars_are_dropped_and_other_stderr_kept(tmp_path):
    stream = nbformat.v4.new_output
    cell = nbformat.v4.new_code_cell("study.analyse()", outputs=[
        stream("stream", name="stderr", text="\rmini-s:   0%|          | 0/8 [00:00<?, ?it/s]"),
        stream("stream", name="stderr", text="\rmini-s (fit): 100%|██████████| 16/16 [00:03<00:00,  4.72it/s]"),
        stream("stream", name="stderr", text="\r                                          "),
        stream("stream", name="stderr", text="\r"),
        stream("stream", name="stderr", text="UserWarning: 3 images were skipped\n"),
        stream("stream", name="stdout", text="mini-s:  12%|█▎ | 1/8 [00:00<00:04,  1.65it/s]\n"),
    ])
    path = tmp_path / "n.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[cell]), path)
    tidy_executed_chapter(path)
    kept = nbformat.read(path, as_version=4).cells[0].outputs
    assert [(o.name, o.text) for o in kept] == [
        ("stderr", "UserWarning: 3 images were skipped\n"),
        ("stdout", "mini-s:  12%|█▎ | 1/8 [00:00<00:04,  1.65it/s]\n")]


def test_build_description_reads_each_chapters_parameters(tmp_path):
    """The introduction says which profile and models built the copy, per chapter when a chapter
    was re-run with other parameters."""
    from vitphase_lib.pipeline import describe_build
    assert describe_build(tmp_path) == "No chapter has been executed yet."
    for name, parameters in [("01_a", {"profile": "smoke"}), ("02_b", {"profile": "smoke"}),
                             ("03_c", {"profile": "smoke", "n_images": 64, "overrides": {"seed": 3}})]:
        notebook = nbformat.v4.new_notebook(metadata={"papermill": {
            "parameters": parameters, "end_time": "2026-11-25T03:56:16.590914+00:00"}})
        nbformat.write(notebook, tmp_path / f"{name}.ipynb")
    text = describe_build(tmp_path)
    first, second = [line for line in text.splitlines() if line.startswith("- ")]
    assert first.startswith("- chapters 01, 02: profile **smoke**") and "executed 2026-11-25." in first
    assert second.startswith("- chapters 03: profile **smoke**")
    assert "64 analysis images" in second and "seed 3" in second and "seed 3" not in first


def test_introduction_includes_the_build_description():
    """The introduction is the book's root page and an executed notebook (it shows this build's
    findings), written beside the build description it includes."""
    import yaml

    from vitphase_lib.pipeline import BUILD_INFO, NOTEBOOKS_DIR, REPO_ROOT
    intro = NOTEBOOKS_DIR / "00_introduction.py"
    assert f"{{include}} {BUILD_INFO}" in intro.read_text()
    toc = yaml.safe_load((REPO_ROOT / "_toc.yml").read_text())
    assert toc["root"] == f"book/chapters/{intro.stem}"


def test_recorded_smoke_notebooks_fold_code_and_hide_checks():
    """The recorded chapters are what the browser test builds the book from: they carry the tags
    the pipeline gives (re-record after a change to :func:`fold_code`)."""
    for path in sorted(RECORDED_SMOKE.glob("*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            tags = cell.metadata.get("tags", [])
            if cell.cell_type == "code" and "# NBVAL_CHECK_OUTPUT" in cell.source:
                assert "remove-cell" in tags, f"{path.name}: {cell.id}"
            elif cell.cell_type == "code" and path.stem != "90_your_own_model":
                assert tags, f"{path.name}: {cell.id} is shown unfolded; re-record the smoke chapters"


# Chapters executed in parallel print what they print one by one: the recorded smoke chapters
# (tests/notebooks) are made by the parallel book, and nbval re-runs each in one kernel.
def test_parallel_kernels_share_the_cores_unless_told_otherwise(monkeypatch):
    from vitphase_lib.pipeline import _limit_threads
    environment = {"MKL_NUM_THREADS": "3"}  # what the worker's kernels will inherit
    monkeypatch.setattr(os, "environ", environment)
    _limit_threads("1")
    assert environment == {"MKL_NUM_THREADS": "3", "OMP_NUM_THREADS": "1"}


@pytest.mark.slow
def test_a_chapter_failing_in_parallel_names_itself_and_the_error(tmp_path):
    with pytest.raises(RuntimeError, match=r"0[23]_.*\.py: .*tiny-x"):
        build_book("smoke", only=["02_", "03_"], html=False, output_dir=tmp_path,
                   overrides={"models": ["tiny-x"]}, jobs=2)


def test_every_numbered_reference_of_the_recorded_chapters_is_defined():
    """A {numref} to a figure or table that no chapter produced fails the HTML build (-W)."""
    labels = {path.stem: numbered_labels(nbformat.read(path, as_version=4))
              for path in sorted(RECORDED_SMOKE.glob("*.ipynb"))}
    everywhere = set().union(*(defined for defined, _ in labels.values()))
    for chapter, (_, referenced) in labels.items():
        assert referenced <= everywhere, (chapter, referenced - everywhere)
    assert {"fig-f7", "tab-t12", "tab-t21", "tab-glance"} <= everywhere


def test_numbered_labels_count_a_figure_only_when_it_was_drawn():
    figure = {"mystnb": {"figure": {"name": "fig-a"}}}
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("see {numref}`fig-a` and {numref}`tab-b`"),
        nbformat.v4.new_code_cell("", metadata=figure, outputs=[]),
        nbformat.v4.new_code_cell("", outputs=[nbformat.v4.new_output(
            "display_data", data={"text/markdown": "```{table} B\n:name: tab-b\n\n| x |\n```"})])])
    assert numbered_labels(notebook) == ({"tab-b"}, {"fig-a", "tab-b"})
    notebook.cells[1].outputs = [nbformat.v4.new_output("display_data", data={"image/png": "iVBOR"})]
    assert numbered_labels(notebook)[0] == {"fig-a", "tab-b"}
