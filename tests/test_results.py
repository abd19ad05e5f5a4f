"""The on-disk result cache (vitphase_lib.results)."""
from __future__ import annotations

import json
import os

import pandas as pd
import pytest

from vitphase_lib.results import cache_key, cached_tables, results_root
from vitphase_lib.zoo import cache_root


def tables(scale: float = 1.0) -> dict[str, pd.DataFrame]:
    return {
        "per_layer": pd.DataFrame({
            "layer": ["raw", "pe", "1", "2", "head"],
            "depth": [0, 1, 2, 3, 4],
            "centered_similarity": [0.5 * scale, -0.01, 1 / 3, 1e-20, -0.123456789012345],
            "flag": [True, False, True, True, False],
        }),
        "summary": pd.DataFrame([{"top1": 87.25 * scale, "images": 1000, "model": "mini-s"}]),
    }


class Compute:
    def __init__(self, result=None, error: Exception | None = None):
        self.calls, self.result, self.error = 0, result, error

    def __call__(self):
        self.calls += 1
        if self.error is not None:
            raise self.error
        return self.result if self.result is not None else tables()


def entries(root):
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def test_default_root_is_in_the_session_cache(isolated_cache):
    assert os.environ["VITPHASE_CACHE"] == str(isolated_cache)
    assert results_root() == cache_root() / "results"
    assert cache_root() in (isolated_cache, isolated_cache / "portable-numerics")  # make test: the latter


def test_computes_once_then_loads(tmp_path):
    compute = Compute()
    first = cached_tables("geometry", {"model": "m", "n": 10}, compute, root=tmp_path)
    second = cached_tables("geometry", {"n": 10, "model": "m"}, compute, root=tmp_path)  # key order
    assert compute.calls == 1
    assert sorted(first) == sorted(second) == ["per_layer", "summary"]
    for name in first:
        pd.testing.assert_frame_equal(first[name], second[name], check_exact=True)
    folder = tmp_path / cache_key("geometry", {"model": "m", "n": 10})
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["kind"] == "geometry" and manifest["key"] == {"model": "m", "n": 10}
    assert manifest["tables"] == ["per_layer", "summary"]
    assert "torch" in manifest["versions"]
    assert entries(tmp_path) == [folder.name]  # no staging folders left behind


def test_round_trip_keeps_values_and_types(tmp_path):
    original = tables()
    result = cached_tables("k", {"a": 1}, Compute(), root=tmp_path)
    loaded = cached_tables("k", {"a": 1}, Compute(error=AssertionError("must not run")), root=tmp_path)
    for name in original:
        pd.testing.assert_frame_equal(result[name], original[name], check_exact=True,
                                      check_dtype=False)
        pd.testing.assert_frame_equal(loaded[name], original[name], check_exact=True,
                                      check_dtype=False)
    assert loaded["per_layer"]["depth"].dtype.kind == "i"
    assert loaded["per_layer"]["flag"].dtype == bool
    assert loaded["per_layer"]["centered_similarity"].tolist() == original["per_layer"][
        "centered_similarity"].tolist()


def test_different_keys_and_kinds_are_different_entries(tmp_path):
    compute = Compute()
    cached_tables("geometry", {"model": "a"}, compute, root=tmp_path)
    cached_tables("geometry", {"model": "b"}, compute, root=tmp_path)
    cached_tables("attention", {"model": "a"}, compute, root=tmp_path)
    assert compute.calls == 3
    assert len(entries(tmp_path)) == 3
    assert cache_key("geometry", {"model": "a"}) != cache_key("geometry", {"model": "b"})
    assert cache_key("geometry", {"model": "a"}).startswith("geometry-")


def test_refresh_recomputes_and_replaces(tmp_path):
    cached_tables("g", {"x": 1}, Compute(tables(1.0)), root=tmp_path)
    compute = Compute(tables(2.0))
    refreshed = cached_tables("g", {"x": 1}, compute, refresh=True, root=tmp_path)
    assert compute.calls == 1
    assert refreshed["summary"]["top1"].iloc[0] == pytest.approx(174.5)
    later = cached_tables("g", {"x": 1}, Compute(error=AssertionError("must not run")), root=tmp_path)
    assert later["summary"]["top1"].iloc[0] == pytest.approx(174.5)
    assert len(entries(tmp_path)) == 1


def test_a_failing_compute_leaves_no_entry(tmp_path):
    with pytest.raises(ZeroDivisionError):
        cached_tables("g", {"x": 2}, Compute(error=ZeroDivisionError("boom")), root=tmp_path)
    assert entries(tmp_path) == []
    compute = Compute()
    cached_tables("g", {"x": 2}, compute, root=tmp_path)
    assert compute.calls == 1  # nothing stale was loaded


def test_a_failure_while_writing_leaves_no_entry_and_no_staging(tmp_path):
    class Unwritable:
        def to_csv(self, *args, **kwargs):
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        cached_tables("g", {"x": 3}, Compute({"good": tables()["summary"], "zzz": Unwritable()}),
                      root=tmp_path)
    assert entries(tmp_path) == []


def test_a_failed_refresh_keeps_the_old_entry(tmp_path):
    cached_tables("g", {"x": 4}, Compute(tables(1.0)), root=tmp_path)
    with pytest.raises(RuntimeError):
        cached_tables("g", {"x": 4}, Compute(error=RuntimeError("x")), refresh=True, root=tmp_path)
    kept = cached_tables("g", {"x": 4}, Compute(error=AssertionError("must not run")), root=tmp_path)
    assert kept["summary"]["top1"].iloc[0] == pytest.approx(87.25)


def test_default_root_is_used(isolated_cache):
    compute = Compute()
    key = {"test": "default-root"}
    cached_tables("default", key, compute)
    assert (cache_root() / "results" / cache_key("default", key) / "manifest.json").is_file()
    assert cache_root().is_relative_to(isolated_cache)


def test_a_table_without_rows_round_trips(tmp_path):
    result = cached_tables("g", {"x": 5}, Compute({"empty": pd.DataFrame([]),
                                                   "full": tables()["summary"]}), root=tmp_path)
    assert len(result["empty"]) == 0
