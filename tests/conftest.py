"""Shared fixtures: an isolated cache directory for the whole session and a synthetic image set."""
from __future__ import annotations

import os

import pytest
import torch

from vitphase_lib.data import synthetic_images


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory):
    """Point $VITPHASE_CACHE at a temporary folder so no test reads or writes ~/.cache/vitphase."""
    cache = tmp_path_factory.mktemp("vitphase-cache")
    previous = os.environ.get("VITPHASE_CACHE")
    os.environ["VITPHASE_CACHE"] = str(cache)
    yield cache
    if previous is None:
        os.environ.pop("VITPHASE_CACHE", None)
    else:
        os.environ["VITPHASE_CACHE"] = previous


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
