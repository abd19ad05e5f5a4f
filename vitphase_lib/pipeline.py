"""Notebooks -> book: jupytext pairs each ``notebooks/*.py`` with a generated ``.ipynb``,
papermill executes it with a profile, and Jupyter Book 1.x assembles the executed chapters."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat
import papermill
from tqdm import tqdm

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
GENERATED_DIR = REPO_ROOT / "build" / "notebooks"
CHAPTERS_DIR = REPO_ROOT / "book" / "chapters"


def notebook_sources() -> list[Path]:
    return sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.py"))


def generate_ipynb(source: Path, target_dir: Path = GENERATED_DIR) -> Path:
    """The ``.ipynb`` paired with a jupytext percent-format source."""
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / f"{source.stem}.ipynb"
    notebook = jupytext.read(source)
    jupytext.write(notebook, target)
    return target


def hide_injected_parameters(path: Path) -> None:
    """Tag papermill's injected-parameters cell ``remove-cell`` (Jupyter Book drops it) and the
    ``parameters`` cell ``hide-cell`` (shown folded)."""
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        tags = cell.metadata.setdefault("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
        if "parameters" in tags and "hide-cell" not in tags:
            tags.append("hide-cell")
    nbformat.write(notebook, path)


def execute_chapter(source: Path, profile: str, output_dir: Path = CHAPTERS_DIR,
                    parameters: dict | None = None) -> Path:
    generated = generate_ipynb(source)
    output_dir.mkdir(parents=True, exist_ok=True)
    output = output_dir / generated.name
    papermill.execute_notebook(str(generated), str(output),
                               parameters={"profile": profile, **(parameters or {})},
                               cwd=str(REPO_ROOT), progress_bar=False, kernel_name="python3")
    hide_injected_parameters(output)
    return output


def build_book(profile: str, only: list[str] | None = None, html: bool = True,
               output_dir: Path = CHAPTERS_DIR) -> Path:
    sources = [s for s in notebook_sources() if not only or any(o in s.stem for o in only)]
    for source in tqdm(sources, desc=f"chapters ({profile} profile)", unit="chapter"):
        tqdm.write(f"executing {source.name}")
        execute_chapter(source, profile, output_dir)
    if html:
        subprocess.run([str(Path(sys.executable).parent / "jupyter-book"), "build", str(REPO_ROOT),
                        "--builder", "html", "-W", "-n", "--keep-going"], check=True, cwd=REPO_ROOT)
    return REPO_ROOT / "_build" / "html" / "index.html"
