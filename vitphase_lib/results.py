"""Result caching: per (model, data, parameters) the tidy tables of an analysis, on disk.

Each entry is a folder ``<cache>/results/<kind>-<hash>/`` with one CSV per table and a
``manifest.json`` saying what produced it (the key, library versions, time taken). The folder is
written under a temporary name and renamed into place, so an interrupted run leaves either a
complete entry or none. In a data-parallel run rank 0 alone reads and writes the cache.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

import pandas as pd

from . import __version__
from .distributed import broadcast_object, world


def results_root() -> Path:
    from .zoo import cache_root
    return cache_root() / "results"


def code_fingerprint() -> str:
    """sha256 of the library's source: a change to any metric invalidates cached results."""
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parent
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def cache_key(kind: str, key: dict) -> str:
    payload = json.dumps({"kind": kind, "key": key, "version": __version__, "code": code_fingerprint()},
                         sort_keys=True, default=str)
    return f"{kind}-{hashlib.sha256(payload.encode()).hexdigest()[:20]}"


def cached_tables(kind: str, key: dict, compute: Callable[[], dict[str, pd.DataFrame]],
                  refresh: bool = False, root: Path | None = None) -> dict[str, pd.DataFrame]:
    """Load the tables of ``(kind, key)`` from the cache, or compute and store them."""
    folder = (root or results_root()) / cache_key(kind, key)
    manifest_path = folder / "manifest.json"
    current = world()
    # rank 0 decides and reads: the ranks of a data-parallel run need not share a file system
    cached = None
    if current.is_main and manifest_path.is_file() and not refresh:
        manifest = json.loads(manifest_path.read_text())
        cached = {name: _read_table(folder / f"{name}.csv") for name in manifest["tables"]}
    cached = broadcast_object(cached)
    if cached is not None:
        return cached
    start = time.time()
    tables = compute()  # every rank takes part in the passes
    if not current.is_main:  # rank 0 writes; the others return what rank 0 will load
        return {name: _read_csv_text(table.to_csv(index=False)) for name, table in tables.items()}
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        for name, table in tables.items():
            table.to_csv(staging / f"{name}.csv", index=False)
        manifest = {"kind": kind, "key": key, "tables": sorted(tables), "code": code_fingerprint(),
                    "seconds": round(time.time() - start, 2), "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                    "versions": _versions()}
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    # return what a later load returns (CSV round trip), so first and cached runs print the same
    return {name: _read_table(folder / f"{name}.csv") for name in tables}


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
