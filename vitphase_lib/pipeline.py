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
               output_dir: Path = CHAPTERS_DIR, overrides: dict | None = None) -> Path:
    """Execute the chapters on ``profile`` (``overrides``: other Study parameters, for every
    chapter) and build the HTML book."""
    sources = [s for s in notebook_sources() if not only or any(o in s.stem for o in only)]
    parameters = {"overrides": overrides} if overrides else None
    for source in tqdm(sources, desc=f"chapters ({profile} profile)", unit="chapter"):
        tqdm.write(f"executing {source.name}")
        execute_chapter(source, profile, output_dir, parameters)
    if html:
        build_html(REPO_ROOT)
    return REPO_ROOT / "_build" / "html" / "index.html"


def build_html(root: Path) -> Path:
    """Jupyter Book 1.x build of ``root`` (warnings are errors), then the HTML clean-up below."""
    build = subprocess.run([str(Path(sys.executable).parent / "jupyter-book"), "build", str(root),
                            "--builder", "html", "-W", "-n", "--keep-going"],
                           capture_output=True, text=True, cwd=root)
    if build.returncode != 0:
        raise RuntimeError(f"jupyter-book build failed:\n{build.stdout[-4000:]}\n{build.stderr[-4000:]}")
    html = root / "_build" / "html"
    for page in html.rglob("*.html"):
        drop_duplicate_inline_scripts(page)
    return html


def drop_duplicate_inline_scripts(page: Path) -> None:
    """Jupyter Book 1.x writes sphinx-thebe's and sphinx-togglebutton's inline configuration
    scripts twice into every page; the repeated ``const THEBE_JS_URL`` is a console error in the
    browser. Keep the first copy of each identical inline ``<script>`` line."""
    seen, kept, changed = set(), [], False
    for line in page.read_text().splitlines(keepends=True):
        stripped = line.strip()
        if stripped.startswith("<script>") and stripped.endswith("</script>"):
            if stripped in seen:
                changed = True
                continue
            seen.add(stripped)
        kept.append(line)
    if changed:
        page.write_text("".join(kept))
