"""The training-time monitor (vitphase_lib.monitor) and its use by the zoo trainer."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import matplotlib
import pandas as pd
import pytest
import torch

from vitphase_lib.analysis import PassConfig, geometry_tables, run_pass
from vitphase_lib.capture import vit_layout
from vitphase_lib.data import synthetic_images
from vitphase_lib.metrics.attention import AttentionGraph
from vitphase_lib.models import MiniViTConfig, build_mini_vit
from vitphase_lib.monitor import COLUMNS, Monitor, read_log
from vitphase_lib.train import MonitorSpec, TrainConfig, Trainer

matplotlib.use("Agg")
MODEL = MiniViTConfig("monitor-test", depth=2, width=16, heads=2, num_classes=4)


@pytest.fixture(scope="module")
def probe():
    return synthetic_images(n=48, num_classes=4, seed=3)


@pytest.fixture
def model():
    torch.manual_seed(0)
    return build_mini_vit(MODEL)


def test_values_equal_the_books_accumulators(model, probe):
    monitor = Monitor(probe.images, probe.labels, aci_images=8, batch_size=16)
    rows = monitor(model, step=0)
    per_layer = geometry_tables(model, probe.as_dataset(), PassConfig(batch_size=16, progress=False))["per_layer"]
    centered = rows[rows.metric == "centered_similarity"].set_index("layer").value
    # the monitor traces attention (timm's unfused path), the geometry pass does not: the two
    # compute the same softmax in a different order, so they agree to float32 rounding
    for layer, value in zip(per_layer.layer, per_layer.centered_similarity):
        assert centered[layer] == pytest.approx(value, abs=1e-6)
    attention = AttentionGraph(vit_layout(model), aci_max_images=8)
    run_pass(model, probe.as_dataset(), [attention], PassConfig(batch_size=16, progress=False))
    table = attention.result()
    for metric in ("cls_centrality", "aci"):
        logged = rows[rows.metric == metric].sort_values("block").value.to_numpy()
        assert logged == pytest.approx(table[metric].to_numpy(), abs=1e-9)
    top1 = rows[rows.metric == "top1"].value.item()
    assert top1 == pytest.approx(100 * float((model(probe.images).argmax(-1) == probe.labels).float().mean()))
    assert rows[rows.metric == "pe_dominance_ratio"].value.item() > 0
    assert list(rows.columns) == COLUMNS


@pytest.mark.parametrize("training", [True, False])
def test_model_mode_and_weights_are_left_as_they_were(model, probe, training):
    model.train(training)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    Monitor(probe.images, probe.labels)(model, step=0)
    assert model.training == training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    assert all("forward" not in vars(block.attn) for block in model.blocks)  # tracing undone


def test_every_and_repeated_steps(model, probe):
    monitor = Monitor(probe.images, probe.labels, every=10)
    assert len(monitor(model, step=0)) and not len(monitor(model, step=5))
    assert len(monitor(model, step=5, force=True))
    assert not len(monitor(model, step=5, force=True))  # already logged
    assert sorted(monitor.rows.step.unique()) == [0, 5]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_log_is_written_at_every_call_and_read_back(model, probe, tmp_path, suffix):
    path = tmp_path / f"monitor{suffix}"
    monitor = Monitor(probe.images, probe.labels, log=path)
    monitor(model, step=0, epoch=0.0)
    monitor(model, step=3, epoch=0.5)
    logged = read_log(path)
    pd.testing.assert_frame_equal(logged, monitor.rows, check_dtype=False)
    again = Monitor(probe.images, probe.labels, log=path)  # a restarted training keeps its rows
    assert sorted(again.rows.step.unique()) == [0, 3]
    again.truncate(0)
    assert sorted(read_log(path).step.unique()) == [0]
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporary file


def test_without_labels_the_label_metrics_are_skipped(model, probe):
    rows = Monitor(probe.images, None, metrics=("similarity", "top1", "probe", "pe"))(model, step=0)
    assert set(rows.metric) == {"centered_similarity", "raw_similarity", "pe_dominance_ratio"}


def test_optional_metrics(model, probe):
    rows = Monitor(probe.images, probe.labels, metrics=("isi", "probe"), infox_dims=4)(model, step=0)
    layers = ["raw", "pe", "1", "2", "head"]
    for metric in ("infox_self", "infox_all", "isi", "probe_top1"):
        assert list(rows[rows.metric == metric].layer) == layers, metric
    isi = rows[rows.metric == "isi"].value.to_numpy()
    infox = rows[rows.metric == "infox_all"].value.to_numpy() - rows[rows.metric == "infox_self"].value.to_numpy()
    assert isi == pytest.approx(infox)


@pytest.mark.parametrize("kwargs, error", [
    ({"metrics": ("similarity", "loss")}, "unknown monitor metric"),
    ({"every": 0}, "every"),
    ({"log": "monitor.json"}, ".csv or .parquet"),
])
def test_bad_arguments_are_refused(probe, kwargs, error):
    with pytest.raises(ValueError, match=error):
        Monitor(probe.images, probe.labels, **kwargs)


def test_bad_probe_sets_are_refused(probe):
    with pytest.raises(TypeError, match="shape"):
        Monitor(probe.images[0], probe.labels)
    with pytest.raises(ValueError, match="labels"):
        Monitor(probe.images, probe.labels[:5])
    with pytest.raises(ValueError, match="16 probe images"):
        Monitor(probe.images[:8], probe.labels[:8], metrics=("isi",))


def test_plot_draws_a_panel_per_metric(model, probe):
    monitor = Monitor(probe.images, probe.labels)
    with pytest.raises(ValueError, match="empty"):
        monitor.plot()
    monitor(model, step=0)
    monitor(model, step=1)
    figure = monitor.plot()
    titled = [ax for ax in figure.axes if ax.get_title()]
    assert [ax.get_title() for ax in titled] == [
        "centered similarity", "raw similarity", "cls centrality", "aci", "pe dominance ratio", "top1"]
    assert all(line.get_xdata().tolist() == [0, 1] for line in titled[0].get_lines())


# --------------------------------------------------------------------------- in the zoo trainer
CONFIG = TrainConfig(epochs=2, batch_size=16, lr=3e-3, warmup_epochs=0.5, threads=1,
                     snapshot_fractions=(1.0,))
SPEC = MonitorSpec(probe_images=32, metrics=("similarity", "attention", "top1"), aci_images=4,
                   fractions=(0.1, 0.25))


def _trainer(run_dir, spec=SPEC):
    train, test = synthetic_images(n=96, num_classes=4, seed=0), synthetic_images(n=32, num_classes=4, seed=1)
    return Trainer(MODEL, CONFIG, train, test, run_dir, progress=False, monitor=spec)


def test_trainer_logs_at_the_start_at_fractions_and_after_each_epoch(tmp_path):
    state = _trainer(tmp_path).run()
    rows = read_log(tmp_path / "monitor.csv")
    # 6 steps per epoch, 12 in all: 10% -> step 1, 25% -> step 3, epochs -> steps 6 and 12
    assert sorted(rows.step.unique()) == [0, 1, 3, 6, 12]
    assert rows[rows.step == 6].epoch.unique().tolist() == [1.0]
    assert state.monitor_seconds > 0


def test_trainer_without_monitor_writes_no_log(tmp_path):
    _trainer(tmp_path, spec=None).run()
    assert not (tmp_path / "monitor.csv").exists()


KILLED_RUN = textwrap.dedent("""
    import sys, time, torch
    sys.path.insert(0, {tests!r})
    import test_monitor as t
    original = torch.optim.AdamW.step
    def slow_step(self, *args, **kwargs):
        time.sleep(0.05)  # time for the test to kill the run mid-epoch
        return original(self, *args, **kwargs)
    torch.optim.AdamW.step = slow_step
    t._trainer({run_dir!r}).run()
""")


def test_log_survives_a_kill_mid_epoch_and_the_resumed_run_logs_the_same(tmp_path):
    reference = tmp_path / "reference"
    _trainer(reference).run()
    run_dir = tmp_path / "killed"
    script = KILLED_RUN.format(tests=str(Path(__file__).parent), run_dir=str(run_dir))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-c", script], env=env)
    log = run_dir / "monitor.csv"
    deadline = time.monotonic() + 120
    # wait until epoch 1's row (step 6) is logged, then kill during epoch 2
    while time.monotonic() < deadline and process.poll() is None:
        if log.is_file() and 6 in set(read_log(log).step):
            break
        time.sleep(0.02)
    time.sleep(0.1)
    assert process.poll() is None, "the run ended before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    survived = read_log(log)
    assert {0, 1, 3, 6} <= set(survived.step) and 12 not in set(survived.step)
    _trainer(run_dir).run()
    pd.testing.assert_frame_equal(read_log(log), read_log(reference / "monitor.csv"))
