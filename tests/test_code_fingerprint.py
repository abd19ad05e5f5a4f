"""The code fingerprint in every results cache key (results.code_fingerprint): it changes when the
code that computes the cached tables changes, and only then."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import vitphase_lib
from vitphase_lib import results

PACKAGE = Path(vitphase_lib.__file__).resolve().parent
# package modules that fingerprinted ones import, yet that cannot change a table's numbers for a
# given key (the rule: results.code_fingerprint): error types, file writing and hashing, the
# cache itself, training (weights enter the key by their hash), the training-time monitor (its
# logs are read, never cached)
LEFT_OUT = {"errors", "io", "monitor", "results", "train"}


def _fingerprint_with_edit(monkeypatch, edited: str) -> str:
    """The fingerprint when every package file whose path starts with ``edited`` has a new line."""
    read = results._read_source

    def read_edited(path: Path) -> bytes:
        source = read(path)
        if path.resolve().relative_to(PACKAGE).as_posix().startswith(edited):
            source += b"\n# edited\n"
        return source

    with monkeypatch.context() as patch:
        patch.setattr(results, "_read_source", read_edited)
        return results.code_fingerprint()


@pytest.mark.parametrize("module", ["bench", "claims", "plotting.py", "pipeline.py", "cli.py",
                                    "monitor.py", "api.py", "results.py", "train.py"])
def test_editing_code_that_computes_no_table_keeps_the_fingerprint(module, monkeypatch):
    assert _fingerprint_with_edit(monkeypatch, module) == results.code_fingerprint()


@pytest.mark.parametrize("module", ["metrics/geometry.py", "metrics/base.py", "analysis.py",
                                    "capture.py", "models.py", "data.py", "imagefolder.py"])
def test_editing_code_that_computes_the_tables_changes_the_fingerprint(module, monkeypatch):
    assert _fingerprint_with_edit(monkeypatch, module) != results.code_fingerprint()


def test_the_fingerprint_reads_the_computing_modules_only(monkeypatch):
    read = []
    original = results._read_source
    monkeypatch.setattr(results, "_read_source", lambda path: read.append(path) or original(path))
    results.code_fingerprint()
    names = {path.relative_to(PACKAGE).as_posix() for path in read}
    assert {"analysis.py", "capture.py", "metrics/base.py", "metrics/geometry.py"} <= names
    assert not any(name.startswith(("bench", "claims", "plotting", "pipeline", "cli")) for name in names)


def _package_imports(path: Path) -> set[str]:
    """The package's top-level modules and folders (``"capture"``, ``"metrics"``) that the module
    at ``path`` imports, at its top or inside a function."""
    here = list(path.parent.relative_to(PACKAGE).parts)  # [] or ["metrics"]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = here[:len(here) - (node.level - 1)]
            module = base + (node.module.split(".") if node.module else [])
            candidates = [module] if module else [[alias.name] for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("vitphase_lib."):
            candidates = [node.module.split(".")[1:]]
        else:
            continue
        found |= {parts[0] for parts in candidates
                  if (PACKAGE / f"{parts[0]}.py").is_file() or (PACKAGE / parts[0]).is_dir()}
    return found


def test_what_fingerprinted_modules_import_is_fingerprinted_or_left_out():
    listed = {entry.removesuffix(".py").rstrip("/") for entry in results.COMPUTING_MODULES}
    for path in results.computing_sources(PACKAGE):
        unlisted = _package_imports(path) - listed - LEFT_OUT
        assert not unlisted, (f"{path.relative_to(PACKAGE)} imports {sorted(unlisted)}: add them to "
                              "results.COMPUTING_MODULES if they can change a cached table, else to "
                              "LEFT_OUT here")
