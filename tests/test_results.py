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
    """The cache's entries and anything left beside them, but not the entries' locks."""
    return sorted(p.name for p in root.iterdir() if p.name != ".locks") if root.exists() else []


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


# --------------------------------------------------------------------------- concurrent runs
def test_a_reader_waits_while_an_entry_is_replaced(tmp_path, monkeypatch):
    """A forced race: while a refresh puts its new folder in place, a reader asks for the entry.
    It waits for the lock and reads the new tables; it never sees the folder missing."""
    import threading

    from vitphase_lib import results
    cached_tables("g", {"x": 6}, Compute(tables(1.0)), root=tmp_path)
    real_replace, reader, outcome = os.replace, [], {}

    def read():
        try:
            outcome["tables"] = cached_tables("g", {"x": 6}, Compute(error=AssertionError(
                "the reader found no entry and computed it")), root=tmp_path)
        except BaseException as error:  # noqa: BLE001 - reported below
            outcome["error"] = error

    def replace_while_reading(source, target):
        if not reader:  # the first rename of the refresh: start a reader right then
            reader.append(threading.Thread(target=read))
            reader[0].start()
            reader[0].join(timeout=1.0)  # it blocks on the lock (old code: it reads at once)
        real_replace(source, target)

    monkeypatch.setattr(results.os, "replace", replace_while_reading)
    cached_tables("g", {"x": 6}, Compute(tables(2.0)), refresh=True, root=tmp_path)
    reader[0].join(timeout=30)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["tables"]["summary"]["top1"].iloc[0] == pytest.approx(174.5)  # the new entry
    assert entries(tmp_path) == [cache_key("g", {"x": 6})]  # the old one is gone, nothing left


COMPUTE_ONCE = """
import sys, time
import pandas as pd
from pathlib import Path
from vitphase_lib.results import cached_tables
root, folder = Path(sys.argv[1]), Path(sys.argv[2])
def compute():
    with (folder / "computed.txt").open("a") as f:
        f.write("computed\\n")
    deadline = time.time() + 120
    while not (folder / "finish").exists() and time.time() < deadline:  # the test says when
        time.sleep(0.05)
    return {"t": pd.DataFrame({"value": [1.5, 2.5]})}
tables = cached_tables("race", {"same": "parameters"}, compute, root=root)
print(tables["t"]["value"].sum())
"""


def test_two_processes_asking_for_one_entry_compute_it_once(tmp_path):
    """The second process asks while the first computes: it waits, then reads the first one's
    entry (old code: both computed)."""
    import subprocess
    import sys
    import threading
    import time

    def start():
        run = subprocess.Popen([sys.executable, "-c", COMPUTE_ONCE, str(tmp_path / "cache"),
                                str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
        err = []
        threading.Thread(target=lambda: err.extend(run.stderr), daemon=True).start()
        return run, err

    def wait_for(condition, what):
        deadline = time.time() + 120
        while not condition():
            assert time.time() < deadline, f"timed out waiting for {what}"
            time.sleep(0.05)

    log = tmp_path / "computed.txt"
    first, _ = start()
    wait_for(log.exists, "the first process to compute")
    second, second_err = start()
    wait_for(lambda: any("waiting for it to finish" in line for line in second_err)
             or log.read_text().count("computed") > 1, "the second process to wait or compute")
    (tmp_path / "finish").touch()
    for run in (first, second):
        assert run.wait(timeout=120) == 0
        assert run.stdout.read().strip() == "4.0"
    assert log.read_text() == "computed\n"  # computed once: the second read the first one's entry
