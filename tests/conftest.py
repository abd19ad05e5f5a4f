"""Shared set-up: an isolated cache directory for the whole run (notebooks included), torch's
global switches restored after each test, and a synthetic image set."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

from vitphase_lib.data import synthetic_images


def pytest_configure(config):
    """Point $VITPHASE_CACHE at a new temporary folder for the whole run, so no test reads or
    writes ~/.cache/vitphase. Set here, before collection, because nbval starts each notebook's
    kernel then, and a kernel keeps the environment it started with."""
    config.vitphase_cache = (tempfile.mkdtemp(prefix="vitphase-cache-"), os.environ.get("VITPHASE_CACHE"))
    os.environ["VITPHASE_CACHE"] = config.vitphase_cache[0]


def pytest_unconfigure(config):
    cache, previous = getattr(config, "vitphase_cache", (None, None))
    if cache is None:
        return
    if previous is None:
        os.environ.pop("VITPHASE_CACHE", None)
    else:
        os.environ["VITPHASE_CACHE"] = previous
    shutil.rmtree(cache, ignore_errors=True)


@pytest.fixture(scope="session")
def isolated_cache(pytestconfig) -> Path:
    """The run's cache folder (see pytest_configure)."""
    return Path(pytestconfig.vitphase_cache[0])


@pytest.fixture(autouse=True)
def restore_torch_globals():
    """The trainer switches on deterministic algorithms and changes the thread count; undo that
    after every test so tests do not depend on their order."""
    deterministic = torch.are_deterministic_algorithms_enabled()
    threads = torch.get_num_threads()
    yield
    torch.use_deterministic_algorithms(deterministic)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


@pytest.fixture
def synthetic():
    """64 single-channel 28 x 28 images of 4 classes (class-dependent blobs plus noise)."""
    return synthetic_images(n=64, num_classes=4, size=28, channels=1, seed=0)


# Whole files of slow tests whose modules do not mark themselves (`make test-fast` leaves the
# slow ones out; the markers are registered in pyproject.toml).
SLOW_FILES = {"test_book_browser.py": ("browser",)}


def pytest_collection_modifyitems(config, items):
    for item in items:
        extra = SLOW_FILES.get(item.path.name)
        if extra is not None:
            item.add_marker(pytest.mark.slow)
            for name in extra:
                item.add_marker(getattr(pytest.mark, name))
