"""Notebooks -> book: jupytext pairs each ``notebooks/*.py`` with a generated ``.ipynb``,
papermill executes it with a profile, and Jupyter Book 1.x assembles the executed chapters."""
from __future__ import annotations

import os
import re
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
    number_cells(notebook)
    jupytext.write(notebook, target)
    return target


def drop_cell_timings(notebook: nbformat.NotebookNode) -> None:
    """Remove each cell's execution timestamps (Jupyter's ``execution`` and papermill's start,
    end and duration), which the book never shows; the notebook-level papermill record (when and
    with which parameters the chapter ran) stays."""
    for cell in notebook.cells:
        cell.metadata.pop("execution", None)
        for key in ("start_time", "end_time", "duration"):
            cell.metadata.get("papermill", {}).pop(key, None)


def number_cells(notebook: nbformat.NotebookNode) -> None:
    """Cell ids from the cell's position (``cell-0``, ...) instead of random ones, and a fixed id
    for papermill's injected-parameters cell, so that a re-executed chapter differs from the one
    it replaces only where its outputs do (the recorded smoke chapters are committed)."""
    for index, cell in enumerate(notebook.cells):
        injected = "injected-parameters" in cell.metadata.get("tags", [])
        cell.id = "injected-parameters" if injected else f"cell-{index}"


PROGRESS_BAR = re.compile(r"^.*\d+%\|.*\|\s*\d+/\d+ \[.*\]\s*$")  # one tqdm refresh


def is_progress_bar(output: dict) -> bool:
    """A stderr output that holds nothing but tqdm refreshes (and the blank line tqdm leaves)."""
    if output.get("output_type") != "stream" or output.get("name") != "stderr":
        return False
    lines = re.split(r"[\r\n]", output.get("text", ""))
    return all(not line.strip() or PROGRESS_BAR.match(line) for line in lines)


def drop_progress_bars(notebook: nbformat.NotebookNode) -> None:
    """Remove the progress bars of the library's long loops from an executed chapter: under
    papermill every tqdm refresh is a separate stderr output, a hundred grey boxes on the page.
    Other stderr (warnings) stays."""
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = [output for output in cell.outputs if not is_progress_bar(output)]


def hide_injected_parameters(notebook: nbformat.NotebookNode) -> None:
    """Tag papermill's injected-parameters cell ``remove-cell`` (Jupyter Book drops it) and the
    ``parameters`` cell ``hide-cell`` (shown folded)."""
    for cell in notebook.cells:
        tags = cell.metadata.setdefault("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
        if "parameters" in tags and "hide-cell" not in tags:
            tags.append("hide-cell")


CHECK_MARK = "# NBVAL_CHECK_OUTPUT"  # a regression-check cell: nbval compares its output
# pages whose code is what the reader came for (a how-to): their code stays unfolded
CODE_IS_CONTENT = frozenset({"90_your_own_model"})


def fold_code(notebook: nbformat.NotebookNode, show_code: bool = False) -> None:
    """Make the page read like a paper with its code a click away: a regression-check cell
    (source holds ``# NBVAL_CHECK_OUTPUT``) is tagged ``remove-cell`` (it stays in the notebook for
    nbval, but its raw dump is not content), and every other untagged code cell ``hide-input``
    (Jupyter Book folds the code and shows the outputs: figures, tables, text), unless
    ``show_code``. A cell that already has a tag keeps only its own: the tag was chosen for it."""
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        tags = cell.metadata.setdefault("tags", [])
        if CHECK_MARK in cell.source:
            if "remove-cell" not in tags:
                tags.append("remove-cell")
        elif not tags and not show_code:
            tags.append("hide-input")


def tidy_executed_chapter(path: Path) -> None:
    """What the book shows of an executed chapter: parameter cells hidden, code folded and
    regression checks removed (:func:`fold_code`), progress bars and per-cell timestamps dropped,
    cell ids by position (one read and one write of the notebook), so that re-executing a chapter
    changes its file only where its outputs change."""
    notebook = nbformat.read(path, as_version=4)
    hide_injected_parameters(notebook)
    fold_code(notebook, show_code=path.stem in CODE_IS_CONTENT)
    drop_progress_bars(notebook)
    drop_cell_timings(notebook)
    number_cells(notebook)
    nbformat.write(notebook, path)


def execute_chapter(source: Path, profile: str, output_dir: Path = CHAPTERS_DIR,
                    parameters: dict | None = None) -> Path:
    generated = generate_ipynb(source)
    output_dir.mkdir(parents=True, exist_ok=True)
    output = output_dir / generated.name
    papermill.execute_notebook(str(generated), str(output),
                               parameters={"profile": profile, **(parameters or {})},
                               cwd=str(REPO_ROOT), progress_bar=False, kernel_name="python3",
                               # the kernel's own start-up log (a warning that its local TCP
                               # sockets are unencrypted, once per chapter); errors still show
                               extra_arguments=["--IPKernelApp.log_level=ERROR"])
    tidy_executed_chapter(output)
    return output


def build_book(profile: str, only: list[str] | None = None, html: bool = True,
               output_dir: Path = CHAPTERS_DIR, overrides: dict | None = None, jobs: int = 1) -> Path:
    """Execute the chapters on ``profile`` (``overrides``: other Study parameters, for every
    chapter), ``jobs`` at a time, and build the HTML book."""
    sources = [s for s in notebook_sources() if not only or any(o in s.stem for o in only)]
    parameters = {"overrides": overrides} if overrides else None
    jobs = min(jobs, len(sources))
    with tqdm(total=len(sources), desc=f"chapters ({profile} profile)", unit="chapter") as progress:
        if jobs <= 1:
            for source in sources:
                tqdm.write(f"executing {source.name}")
                execute_chapter(source, profile, output_dir, parameters)
                progress.update()
        else:
            _execute_in_parallel(sources, profile, output_dir, parameters, jobs, progress)
    if html:
        build_html(REPO_ROOT)
    return REPO_ROOT / "_build" / "html" / "index.html"


def _execute_in_parallel(sources: list[Path], profile: str, output_dir: Path, parameters: dict | None,
                         jobs: int, progress: tqdm) -> None:
    """Chapters in ``jobs`` worker processes, each kernel with its share of the cores' threads
    (two multi-threaded kernels on the same cores would spin against each other)."""
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from multiprocessing import get_context
    threads = str(max(1, cpu_cores() // jobs))
    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn"), initializer=_limit_threads,
                             initargs=(threads,)) as pool:
        futures = {pool.submit(_execute_chapter_quietly, source, profile, output_dir, parameters): source
                   for source in sources}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                if future.exception() is not None:
                    tqdm.write(f"{futures[future].name} failed; waiting for the chapters still running")
                    pool.shutdown(cancel_futures=True)
                    raise future.exception()
                tqdm.write(f"executed {futures[future].name}")
                progress.update()


def _limit_threads(threads: str) -> None:
    """A worker's environment, which its kernels inherit: the thread count, unless one is set."""
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, threads)


def _execute_chapter_quietly(source: Path, profile: str, output_dir: Path, parameters: dict | None) -> Path:
    """:func:`execute_chapter` in a worker process; a failure comes back as a RuntimeError naming
    the chapter and the error (papermill's exceptions do not survive the trip between processes;
    after a failed cell, the executed notebook keeps the traceback)."""
    try:
        return execute_chapter(source, profile, output_dir, parameters)
    except papermill.PapermillExecutionError as error:
        raise RuntimeError(f"{source.name}: {error.ename}: {error.evalue} (the traceback is in "
                           f"{output_dir / source.with_suffix('.ipynb').name})") from None
    except Exception as error:  # a dead kernel, an unreadable source, ...
        raise RuntimeError(f"{source.name}: {type(error).__name__}: {error}") from None


def cpu_cores() -> int:
    """The cores this process may run on (a container's share, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


NUMREF = re.compile(r"\{numref\}`([^`<]+)`")
TABLE_NAME = re.compile(r"^:name: (\S+)$", re.M)


def numbered_labels(notebook: nbformat.NotebookNode) -> tuple[set[str], set[str]]:
    """(defined, referenced): the figure and table labels an executed chapter defines (a figure
    cell's name when the cell drew an image; a MyST table's ``:name:`` in an output) and those its
    markdown cites with ``{numref}``. A cited label no chapter defines breaks the HTML build."""
    defined, referenced = set(), set()
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            referenced |= set(NUMREF.findall(cell.source))
            continue
        outputs = cell.get("outputs", [])
        name = cell.metadata.get("mystnb", {}).get("figure", {}).get("name")
        if name and any("image/png" in o.get("data", {}) for o in outputs):
            defined.add(name)
        for output in outputs:
            defined |= set(TABLE_NAME.findall(output.get("data", {}).get("text/markdown", "")))
    return defined, referenced


BUILD_INFO = "this_build.md"  # written beside the executed chapters, included by the introduction


def describe_build(chapters_dir: Path = CHAPTERS_DIR) -> str:
    """What built this copy, read back from the executed chapters' papermill metadata: the
    parameters each chapter ran with (resolved through its profile), when, and from which commit."""
    from .study import Study
    paths = sorted(chapters_dir.glob("[0-9][0-9]_*.ipynb"))
    if not paths:
        return "No chapter has been executed yet."
    # (study, chapter numbers, dates) per distinct set of parameters, in chapter order; a Study
    # holds a dict (checkpoints), so groups are found by equality, not by hashing
    groups: list[tuple[Study, list[str], set[str]]] = []
    for path in paths:
        papermill_meta = nbformat.read(path, as_version=4).metadata.get("papermill", {})
        parameters = dict(papermill_meta.get("parameters", {}))
        study = Study.from_notebook(parameters.pop("profile", "default"),
                                    parameters.pop("overrides", None), **parameters)
        group = next((g for g in groups if g[0] == study), None)
        if group is None:
            group = (study, [], set())
            groups.append(group)
        group[1].append(path.stem.split("_")[0])
        if papermill_meta.get("end_time"):
            group[2].add(papermill_meta["end_time"][:10])
    lines = []
    for study, chapters, dates in groups:
        dates = sorted(dates)
        when = "n/a" if not dates else dates[0] if len(dates) == 1 else f"{dates[0]} to {dates[-1]}"
        scope = "every chapter" if len(chapters) == len(paths) else "chapters " + ", ".join(chapters)
        lines.append(
            f"- {scope}: profile **{study.profile}**, models {', '.join(study.models)}; data "
            f"{study.dataset}; {study.n_images} analysis images, {study.n_probe_fit} probe-fit and "
            f"{study.n_probe_score} probe-score images; device {study.device}, {study.dtype}; seed "
            f"{study.seed}; executed {when}.")
    return f"This copy was built{_source_commit()} with:\n\n" + "\n".join(lines) + "\n"


def _source_commit() -> str:
    """' from vitphase commit `abc1234`' (``-dirty`` with local changes), or '' outside git."""
    try:
        commit = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True,
                                text=True, cwd=REPO_ROOT)
    except OSError:  # no git
        return ""
    return f" from vitphase commit `{commit.stdout.strip()}`" if commit.returncode == 0 else ""


def build_html(root: Path) -> Path:
    """Jupyter Book 1.x build of ``root`` (warnings are errors), then the HTML clean-up below."""
    (root / "book" / "chapters" / BUILD_INFO).write_text(describe_build(root / "book" / "chapters"))
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
