"""Result caching: per (model, data, parameters) the tidy tables of an analysis, on disk.

Each entry is a folder ``<cache>/results/<kind>-<hash>/`` with one CSV per table and a
``manifest.json`` saying what produced it (the key, library versions, time taken). The folder is
written under a temporary name and renamed into place, so an interrupted run leaves either a
complete entry or none. Each entry has a lock (``<cache>/results/.locks/``): a second process
asking for an entry another one is computing waits, then reads it, and a reader never sees an
entry while it is being replaced. In a data-parallel run rank 0 alone reads and writes the cache.

Computations keep large temporary files (the probe features) in scratch folders
(:func:`scratch_folder`) removed when they end, on an error, Ctrl-C or SIGTERM alike; the folder's
name records its process, so a later run removes those of runs that were killed outright.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import shutil
import signal
import socket
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Callable, Iterator

import pandas as pd

from . import __version__
from .distributed import broadcast_object, world

log = logging.getLogger(__name__)


def results_root() -> Path:
    from .zoo import cache_root
    return cache_root() / "results"


# The modules whose code computes the cached tables, relative to the package ("metrics/": every
# module in that folder); the rule is in code_fingerprint's docstring.
COMPUTING_MODULES = ("analysis.py", "capture.py", "data.py", "distributed.py", "imagefolder.py",
                     "layers.py", "loading.py", "metrics/", "models.py", "numerics.py", "study.py",
                     "zoo.py")


def code_fingerprint() -> str:
    """sha256 of the code that computes the cached tables, part of every cache key: editing that
    code invalidates the cache, editing any other module does not.

    The rule: a module is in :data:`COMPUTING_MODULES` if its code can change the numbers of a
    table for the same key (weights, data, parameters): the forward pass and its hooks (models,
    capture), the passes and the metrics (analysis, distributed, metrics/), the images and their
    preprocessing (data, imagefolder), how a model is built and its weights loaded (loading, zoo),
    the layer vocabulary (layers), the numerics settings (numerics), and what each analysis is
    given (study). Left out: what presents, reports or orchestrates results (api, cli, bench*,
    claims*, plotting, pipeline, monitor, estimate), training (train: the weights enter the key by
    their hash), the cache itself (results, io), error types, and everything outside the package
    (README, book).
    A package module that a listed one imports must be listed or named as left out in
    ``tests/test_code_fingerprint.py``, so new computing code cannot slip past the key.
    """
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parent
    for path in computing_sources(package):
        digest.update(path.relative_to(package).as_posix().encode())
        digest.update(_read_source(path))
    return digest.hexdigest()[:16]


def computing_sources(package: Path) -> list[Path]:
    """The files of :data:`COMPUTING_MODULES` in ``package``, sorted; a missing one raises."""
    paths = []
    for entry in COMPUTING_MODULES:
        if entry.endswith("/"):
            paths += (package / entry).rglob("*.py")
        elif (package / entry).is_file():
            paths.append(package / entry)
        else:
            raise FileNotFoundError(f"{package / entry} (results.COMPUTING_MODULES) does not exist")
    return sorted(paths)


def _read_source(path: Path) -> bytes:
    return path.read_bytes()


def cache_key(kind: str, key: dict) -> str:
    payload = json.dumps({"kind": kind, "key": key, "version": __version__, "code": code_fingerprint()},
                         sort_keys=True, default=str)
    return f"{kind}-{hashlib.sha256(payload.encode()).hexdigest()[:20]}"


def cached_tables(kind: str, key: dict, compute: Callable[[], dict[str, pd.DataFrame]],
                  refresh: bool = False, root: Path | None = None) -> dict[str, pd.DataFrame]:
    """Load the tables of ``(kind, key)`` from the cache, or compute and store them.

    Args:
        kind: the analysis, the prefix of the entry's folder name.
        key: what identifies the result (weights, data, parameters); JSON-serialisable.
        compute: returns the tables, called only when the entry is missing (or ``refresh``).
        refresh: recompute and replace the entry.
        root: the cache folder (default :func:`results_root`).
    """
    folder = (root or results_root()) / cache_key(kind, key)
    current = world()
    # rank 0 holds the entry's lock from the look-up to the write, so that a second process
    # waits for the result instead of computing it again
    with entry_lock(folder) if current.is_main else nullcontext():
        # rank 0 decides and reads: the ranks of a data-parallel run need not share a file system
        cached = _load(folder) if current.is_main and not refresh else None
        cached = broadcast_object(cached)
        if cached is not None:
            return cached
        start = time.time()
        tables = compute()  # every rank takes part in the passes
        if not current.is_main:  # rank 0 writes; the others return what rank 0 will load
            return {name: _read_csv_text(table.to_csv(index=False)) for name, table in tables.items()}
        _store(folder, kind, key, tables, time.time() - start)
        # return what a later load returns (CSV round trip), so first and cached runs print the same
        return {name: _read_table(folder / f"{name}.csv") for name in tables}


@contextmanager
def entry_lock(folder: Path) -> Iterator[None]:
    """Hold the lock of the cache entry ``folder`` (a file lock: the operating system releases
    it when its process dies, however it dies). Says once that it waits, when another process
    holds it.

    Args:
        folder: the entry's folder (it need not exist).
    """
    from filelock import FileLock, Timeout
    locks = folder.parent / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(locks / f"{folder.name}.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.warning("vitphase: another run is computing or reading %s; waiting for it to finish "
                    "(lock %s)", folder.name, lock.lock_file)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def _load(folder: Path) -> dict[str, pd.DataFrame] | None:
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        return None
    manifest = json.loads(manifest_path.read_text())
    return {name: _read_table(folder / f"{name}.csv") for name in manifest["tables"]}


def _store(folder: Path, kind: str, key: dict, tables: dict[str, pd.DataFrame],
           seconds: float) -> None:
    """Write the entry under a temporary name, then rename it into place. Called with the entry's
    lock held, so staging folders of this entry left by a killed run can be removed."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    for leftover in folder.parent.glob(f".{folder.name}.*"):
        shutil.rmtree(leftover, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        for name, table in tables.items():
            table.to_csv(staging / f"{name}.csv", index=False)
        manifest = {"kind": kind, "key": key, "tables": sorted(tables), "code": code_fingerprint(),
                    "seconds": round(seconds, 2), "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                    "versions": _versions()}
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
        _replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _replace(staging: Path, folder: Path) -> None:
    """Rename ``staging`` to ``folder``; an existing ``folder`` is moved aside first and deleted
    after (restored if the rename fails), so the old entry is never half deleted."""
    if not folder.exists():
        os.replace(staging, folder)
        return
    old = folder.parent / f".{folder.name}.old-{uuid.uuid4().hex[:8]}"
    os.replace(folder, old)
    try:
        os.replace(staging, folder)
    except BaseException:
        os.replace(old, folder)
        raise
    shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------------------- scratch folders
class Terminated(BaseException):
    """SIGTERM, raised so that finally-blocks clean up as after Ctrl-C. Like KeyboardInterrupt it
    is no Exception, so ``except Exception`` does not swallow it."""


@contextmanager
def sigterm_cleanup() -> Iterator[None]:
    """While active, SIGTERM raises :class:`Terminated` in the main thread, so that the
    finally-blocks and context managers inside clean up (without a handler Python dies at once);
    on the way out the process then ends by SIGTERM, as it would have. A no-op outside the main
    thread, or where SIGTERM already has a handler (an outer use, the trainer's)."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL):
        yield
        return
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    except Terminated:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        raise  # not reached: the default action ends the process
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _raise_terminated(signum, frame) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM does not cut the clean-up short
    raise Terminated("terminated by SIGTERM")


def scratch_root() -> Path:
    from .zoo import cache_root
    return cache_root() / "scratch"


@contextmanager
def scratch_folder(root: Path | None = None) -> Iterator[Path]:
    """A new folder for one computation's temporary files, deleted when it ends (normally, on an
    error, Ctrl-C or SIGTERM). Scratch folders left by dead runs of this machine are deleted
    first.

    Args:
        root: where scratch folders live (default ``<cache>/scratch``).
    """
    root = root or scratch_root()
    root.mkdir(parents=True, exist_ok=True)
    remove_stale_scratch(root)
    with sigterm_cleanup(), tempfile.TemporaryDirectory(dir=root, prefix=_scratch_prefix()) as folder:
        yield Path(folder)


# scratch-<host>-<pid>-...: a later run on the same host removes the folder once <pid> is gone; a
# cache shared by several machines keeps other hosts' folders, whose processes it cannot see
_SCRATCH_NAME = re.compile(r"scratch-([0-9a-f]{8})-(\d+)-")


def _host_tag() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _scratch_prefix() -> str:
    return f"scratch-{_host_tag()}-{os.getpid()}-"


def remove_stale_scratch(root: Path) -> list[Path]:
    """Delete the scratch folders in ``root`` whose process (on this host) no longer runs.

    Args:
        root: the scratch folder.

    Returns:
        The folders deleted.
    """
    removed = []
    for entry in root.iterdir() if root.is_dir() else ():
        match = _SCRATCH_NAME.match(entry.name)
        if match and match[1] == _host_tag() and not _process_alive(int(match[2])):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def _process_alive(pid: int) -> bool:
    if os.name != "posix":  # os.kill(pid, 0) is no liveness check elsewhere: keep the folder
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _read_csv_text(text: str) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(text)) if text.strip() else pd.DataFrame()


def _read_table(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:  # a table with no columns is stored as an empty file
        return pd.DataFrame()


def _versions() -> dict[str, str]:
    import numpy
    import timm
    import torch
    return {"vitphase": __version__, "torch": torch.__version__, "timm": timm.__version__,
            "numpy": numpy.__version__, "pandas": pd.__version__}
