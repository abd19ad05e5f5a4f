"""The benchmark core (vitphase_lib.bench) on a tiny ViT: result structure, not speed."""
from __future__ import annotations

import os

import pytest
import torch

from vitphase_lib import bench, metrics
from vitphase_lib.bench import (CAPTURE, CAPTURE_NO_ATTN, DIAGNOSTIC_VARIANTS, PLAIN, PLAIN_UNFUSED,
                                BenchReport, ModelSpec, RandomImages, accumulator_classes,
                                format_report, memory_scaling, random_images, time_passes)
from vitphase_lib.metrics.base import Accumulator
from vitphase_lib.models import MiniViTConfig

TINY = MiniViTConfig("t", depth=2, width=16, heads=2)


@pytest.fixture(scope="module")
def spec():
    return ModelSpec.mini(TINY, batch_size=4, label="tiny")


@pytest.fixture(scope="module")
def timing(spec):
    model = spec.build()
    fused = [block.attn.fused_attn for block in model.blocks]
    result = time_passes(model, random_images(8, 1, 28), batch_size=4, repeats=3,
                         variants=DIAGNOSTIC_VARIANTS, label="tiny")
    result.model_after = model
    result.fused_before = fused
    return result


def test_registry_finds_the_exported_metric_accumulators():
    names = [cls.__name__ for cls in accumulator_classes()]
    assert "TokenGeometry" in names and "Top1" in names
    assert "Accumulator" not in names and "FiniteCheck" not in names  # run_pass adds FiniteCheck itself
    assert all(issubclass(cls, Accumulator) for cls in accumulator_classes())


def test_registry_picks_up_a_newly_exported_accumulator(monkeypatch):
    class AttentionEntropy(Accumulator):
        def on_attention(self, block, attention):
            self.add(f"{block}/seen", attention.sum())

    class NoCallbacks(Accumulator):  # implements no sink callback: nothing to benchmark
        pass

    monkeypatch.setattr(metrics, "AttentionEntropy", AttentionEntropy, raising=False)
    monkeypatch.setattr(metrics, "NoCallbacks", NoCallbacks, raising=False)
    monkeypatch.setattr(metrics, "__all__", [*metrics.__all__, "AttentionEntropy", "NoCallbacks"])
    found = accumulator_classes()
    assert AttentionEntropy in found and NoCallbacks not in found


def test_timing_result_structure(timing):
    assert timing.images == 8 and timing.batch_size == 4 and timing.repeats == 3
    assert set(timing.seconds) == {PLAIN, PLAIN_UNFUSED, CAPTURE_NO_ATTN, CAPTURE}
    for variant, seconds in timing.seconds.items():
        assert len(seconds) == 3, variant
        assert all(s > 0 for s in seconds), variant
    assert timing.plain == pytest.approx(sorted(timing.seconds[PLAIN])[1])
    assert timing.capture == pytest.approx(sorted(timing.seconds[CAPTURE])[1])
    assert timing.ratio == pytest.approx(timing.capture / timing.plain)
    assert timing.paired_ratios == pytest.approx(
        [c / p for c, p in zip(timing.seconds[CAPTURE], timing.seconds[PLAIN])])
    assert timing.passed == (timing.ratio <= bench.TIME_TARGET)
    assert timing.accumulators == [cls.__name__ for cls in accumulator_classes()]


def test_timing_leaves_the_model_as_it_was(timing):
    model = timing.model_after
    assert [block.attn.fused_attn for block in model.blocks] == timing.fused_before
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_variants_must_include_plain_and_capture(spec):
    with pytest.raises(ValueError):
        time_passes(spec.build(), random_images(4, 1, 28), 4, 1, variants=(PLAIN,))


def test_random_images_are_deterministic_and_lazy():
    data = RandomImages(5, 1, 28, seed=3)
    assert len(data) == 5
    image, label = data[2]
    assert image.shape == (1, 28, 28) and 0 <= label < 10
    assert torch.equal(image, RandomImages(5, 1, 28, seed=3)[2][0])
    with pytest.raises(IndexError):
        data[5]


def test_model_spec_round_trips_through_json(spec):
    assert ModelSpec.from_json(spec.to_json()) == spec
    assert spec.build().embed_dim == TINY.width


def test_memory_scaling_and_report(spec, timing):
    scaling = memory_scaling(spec, 4, parallel=True)  # two fresh subprocesses: 4 and 16 images
    assert scaling.small.images == 4 and scaling.large.images == 16
    assert scaling.batch_size == 4
    for result in (scaling.small, scaling.large):
        assert result.peak_rss_mb > 0 and result.before_pass_rss_mb > 0 and result.seconds > 0
        assert result.peak_rss_mb >= result.before_pass_rss_mb
        assert result.cuda_peak_mb is None  # CPU
        assert result.ru_maxrss_mb > 0
        assert result.peak_source == ("VmHWM" if os.path.exists("/proc/self/clear_refs") else "ru_maxrss")
    assert scaling.ratio == pytest.approx(scaling.large.peak_rss_mb / scaling.small.peak_rss_mb)
    assert scaling.passed == (scaling.ratio <= bench.MEMORY_TARGET)

    report = BenchReport(device="cpu", threads=torch.get_num_threads(), timings=[timing],
                         memory=[scaling], seconds=1.0)
    text = format_report(report)
    assert "tiny" in text and "TokenGeometry" in text
    assert f"{timing.ratio:.2f}x" in text and f"{scaling.ratio:.3f}x" in text
    assert text.count("PASS") + text.count("MISS") == 2
    assert "Where the overhead goes" in text
    assert "ru_maxrss" in text
