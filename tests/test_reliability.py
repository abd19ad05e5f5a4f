"""Runs that are killed: the probe-feature scratch folder is removed on SIGTERM, and a later run
removes the scratch of runs that died without cleaning up (SIGKILL, power loss)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from vitphase_lib import results

# `vitphase analyse` (or the library directly) on tiny-s, with the analysis replaced by one that
# writes a probe-feature file into its scratch folder, says so, and then runs until it is killed
KILLED_RUN = """
import sys, time
from vitphase_lib import study
def analysis(*args, feature_folder, **kwargs):
    with open(f"{feature_folder}/features.npy", "wb") as f:
        f.write(bytes(1 << 20))
    print("features written", flush=True)
    time.sleep(600)
study.full_analysis_tables = analysis
if sys.argv[1] == "cli":
    from vitphase_lib.cli import main
    main(["analyse", "--profile", "smoke", "--set", "models=[tiny-s]", "--set", "refresh=true"])
else:
    study.Study.from_profile("smoke", models=["tiny-s"], refresh=True).analysis("tiny-s")
"""


def scratch_contents(cache) -> list[str]:
    """Everything in the scratch folders under ``cache`` (or its portable-numerics folder)."""
    return sorted(str(p.relative_to(cache)) for folder in cache.rglob("scratch") for p in folder.iterdir())


@pytest.mark.parametrize("via", ["cli", "library"])
def test_sigterm_removes_the_scratch_folder(tmp_path, via):
    env = {**os.environ, "VITPHASE_CACHE": str(tmp_path), "OMP_NUM_THREADS": "1"}
    run = subprocess.Popen([sys.executable, "-c", KILLED_RUN, via], env=env, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = run.stdout.readline()
        assert line == "features written\n", run.stderr.read()[-3000:] if not line else line
        assert len(scratch_contents(tmp_path)) == 1  # the run's scratch folder, in use
        run.send_signal(signal.SIGTERM)
        assert run.wait(timeout=60) == -signal.SIGTERM  # it still ends by the signal
    finally:
        run.kill()
        run.communicate()
    assert scratch_contents(tmp_path) == []


def dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_later_run_removes_the_scratch_of_dead_runs(tmp_path):
    host = results._host_tag()
    other_host = "0" * 8 if host != "0" * 8 else "1" * 8
    dead = dead_pid()
    stale = tmp_path / f"scratch-{host}-{dead}-abc"
    alive = tmp_path / f"scratch-{host}-{os.getpid()}-def"  # a run still going
    elsewhere = tmp_path / f"scratch-{other_host}-{dead}-ghi"  # a shared cache: not this host's
    unrelated = tmp_path / "notes"
    for folder in (stale, alive, elsewhere, unrelated):
        folder.mkdir()
        (folder / "features.npy").write_bytes(b"x")
    with results.scratch_folder(tmp_path) as mine:
        assert mine.parent == tmp_path and mine.name.startswith(f"scratch-{host}-{os.getpid()}-")
        assert not stale.exists()
        assert alive.exists() and elsewhere.exists() and unrelated.exists()
    assert not mine.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, elsewhere.name, "notes"])


def test_the_scratch_folder_is_removed_after_an_error(tmp_path):
    with pytest.raises(ZeroDivisionError):
        with results.scratch_folder(tmp_path) as folder:
            (folder / "features.npy").write_bytes(b"x")
            1 / 0
    assert list(tmp_path.iterdir()) == []


def test_sigterm_cleanup_changes_nothing_when_no_signal_comes():
    before = signal.getsignal(signal.SIGTERM)
    with results.sigterm_cleanup():
        inside = signal.getsignal(signal.SIGTERM)
        with results.sigterm_cleanup():  # nested: the outer handler stays
            assert signal.getsignal(signal.SIGTERM) is inside
    assert signal.getsignal(signal.SIGTERM) is before
    assert (inside is not before) == (before is signal.SIG_DFL)
