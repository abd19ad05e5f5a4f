"""The benchmark (vitphase_lib.bench) on a tiny ViT: result structure, not speed; its JSON result
and the README table rendered from it."""
from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from vitphase_lib import bench
from vitphase_lib.analysis import PassConfig
from vitphase_lib.bench import (CAPTURE, CAPTURE_NO_ATTN, CAPTURE_NO_METRICS, CAPTURE_PROFILE,
                                CAPTURE_PROFILE_NO_ACI, DIAGNOSTIC_VARIANTS, GEOMETRY_PASS, PLAIN,
                                PLAIN_UNFUSED, BenchCase, BenchPlan, BenchReport, Caps, ModelSpec,
                                ProfileShare, RandomImages, format_report, memory_scaling,
                                random_images, run_benchmark, sweep_accumulators, time_passes)
from vitphase_lib.bench import timing as timing_module
from vitphase_lib.metrics.attention import AttentionGraph, AttentionHeads
from vitphase_lib.metrics.scrambling import TokenMoments
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


@pytest.fixture(scope="module")
def profile_timing(spec):
    """Plain, capture and capture with the ACI on the first 3 and the PCA on the first 5 of 8
    images."""
    return time_passes(spec.build(), random_images(8, 1, 28), batch_size=4, repeats=2,
                       variants=(PLAIN, CAPTURE, CAPTURE_PROFILE), label="tiny",
                       caps=Caps(aci=3, pca=5))


def _names(accumulators) -> list[str]:
    return [type(a).__name__ for a in accumulators]


@pytest.mark.parametrize("per_head", [False, True])
def test_bench_times_the_first_sweep_of_the_analysis(spec, monkeypatch, synthetic, per_head):
    """The capture variants feed exactly the accumulators full_analysis_tables' first sweep
    feeds: both come from analysis.analysis_accumulators."""
    import vitphase_lib.analysis as analysis
    sweeps = []

    class FirstSweepDone(Exception):
        pass

    def first_sweep_only(model, dataset, sinks, config, attention=None, desc="pass"):
        sweeps.append(_names(sinks))
        raise FirstSweepDone  # the later sweeps are not timed

    monkeypatch.setattr(analysis, "run_pass", first_sweep_only)
    model, data = spec.build(), synthetic.subset(range(8)).as_dataset()
    with pytest.raises(FirstSweepDone):
        analysis.full_analysis_tables(model, data, data, data, TINY.num_classes,
                                      PassConfig(batch_size=4, progress=False), per_head=per_head)
    assert sweeps == [_names(sweep_accumulators(model, per_head=per_head))]
    assert ("AttentionHeads" in sweeps[0]) == per_head
    assert {"TokenGeometry", "Top1", "AttentionGraph", "CollapseMoments", "TokenMoments"} <= set(sweeps[0])


def test_sweep_accumulators_take_the_caps_and_can_leave_the_aci_out(spec):
    model = spec.build()
    sinks = sweep_accumulators(model, Caps(aci=3, pca=5, head_aci=2), per_head=True)
    (graph,) = [a for a in sinks if isinstance(a, AttentionGraph)]
    (heads,) = [a for a in sinks if isinstance(a, AttentionHeads)]
    (moments,) = [a for a in sinks if isinstance(a, TokenMoments)]
    assert (graph.aci_max_images, heads.aci_max_images, moments.max_images) == (3, 2, 5)
    no_aci = sweep_accumulators(model, Caps(aci=3, pca=5, head_aci=2), per_head=True, aci=False)
    assert [a.aci_max_images for a in no_aci if isinstance(a, (AttentionGraph, AttentionHeads))] == [0, 0]
    every = sweep_accumulators(model)
    assert [a.aci_max_images for a in every if isinstance(a, AttentionGraph)] == [None]
    assert not any(isinstance(a, AttentionHeads) for a in every)


def test_timing_result_structure(timing):
    assert timing.images == 8 and timing.batch_size == 4 and timing.repeats == 3
    assert set(timing.seconds) == {PLAIN, PLAIN_UNFUSED, CAPTURE_NO_METRICS, CAPTURE_NO_ATTN, CAPTURE}
    for variant, seconds in timing.seconds.items():
        assert len(seconds) == 3, variant
        assert all(s > 0 for s in seconds), variant
    assert timing.plain == pytest.approx(sorted(timing.seconds[PLAIN])[1])
    assert timing.capture == pytest.approx(sorted(timing.seconds[CAPTURE])[1])
    assert timing.ratio == pytest.approx(timing.capture / timing.plain)
    assert timing.paired_ratios == pytest.approx(
        [c / p for c, p in zip(timing.seconds[CAPTURE], timing.seconds[PLAIN])])
    assert timing.passed == (timing.ratio <= bench.TIME_TARGET)
    assert timing.accumulators == _names(sweep_accumulators(timing.model_after))
    assert set(timing.callback_seconds) == set(timing.accumulators)
    for name, spent in timing.callback_seconds.items():
        assert len(spent) == 3 and all(s >= 0 for s in spent), name
        # time inside callbacks is part of the capture pass that it was measured in
        assert all(s < c for s, c in zip(spent, timing.seconds[CAPTURE])), name


def test_timing_leaves_the_model_as_it_was(timing):
    model = timing.model_after
    assert [block.attn.fused_attn for block in model.blocks] == timing.fused_before
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_capture_variants_run_what_they_say(spec, monkeypatch):
    """'capture, no metrics' traces the attention with no accumulator (run_pass adds only its
    NaN check); 'capture, no attn' runs every accumulator without tracing the attention."""
    import vitphase_lib.analysis as analysis
    calls = []
    monkeypatch.setattr(analysis, "run_pass", lambda model, dataset, sinks, config, attention, desc:
                        calls.append((len(sinks), attention)))
    model, images = spec.build(), random_images(4, 1, 28)
    config = PassConfig(batch_size=4, progress=False)
    for variant in (CAPTURE_NO_METRICS, CAPTURE_NO_ATTN, CAPTURE):
        bench.run_variant(variant, model, images, config)
    every = len(sweep_accumulators(model))
    assert calls == [(0, True), (every, False), (every, True)]


def test_variants_must_include_plain_and_capture(spec):
    with pytest.raises(ValueError):
        time_passes(spec.build(), random_images(4, 1, 28), 4, 1, variants=(PLAIN,))


def test_profile_share_is_read_from_the_profile():
    assert ProfileShare.read("default") == ProfileShare("default", 512, 512, 2000, True, 32)
    paper = ProfileShare.read("paper")
    assert paper == ProfileShare("paper", 512, 512, 10000, False, 128)
    # smoke sets no cap: the Study defaults apply
    assert ProfileShare.read("smoke") == ProfileShare("smoke", 512, 512, 256, True, 128)


def test_profile_share_gives_the_caps_of_a_timing_pass():
    assert ProfileShare("default", 512, 512, 2000, True, 128).caps(250) == Caps(64, 64, 16)
    assert ProfileShare("paper", 512, 512, 10000, False, 128).caps(8) == Caps(1, 1, None)


@pytest.mark.parametrize("share, timing_images, expected", [
    (ProfileShare("default", 512, 512, 2000), 250, (64, 64)),    # 250 * 0.256 = 64
    (ProfileShare("default", 512, 512, 2000), 100, (26, 26)),    # 25.6, rounded
    (ProfileShare("paper", 512, 512, 10000), 8, (1, 1)),         # 0.41 rounds to 0: at least one
    (ProfileShare("paper", 512, 512, 10000), 1, (1, 1)),
    (ProfileShare("mixed", 512, 200, 2000), 250, (64, 25)),      # each cap on its own
    (ProfileShare("all", None, 512, 2000), 250, (250, 64)),      # no ACI cap: every image
    (ProfileShare("all", 512, None, 2000), 250, (64, 250)),      # no PCA cap: every image
    (ProfileShare("small", 512, 512, 100), 8, (8, 8)),           # cap above n_images: every image
])
def test_profile_share_gives_the_images_of_a_timing_pass(share, timing_images, expected):
    assert (share.images(timing_images, "aci"), share.images(timing_images, "pca")) == expected


def test_profile_share_rejects_an_unknown_cap():
    with pytest.raises(ValueError):
        ProfileShare("default", 512, 512, 2000).images(8, "probe")


def test_timing_with_aci_images_runs_the_profile_variant(profile_timing):
    t = profile_timing
    assert set(t.seconds) == {PLAIN, CAPTURE, CAPTURE_PROFILE}
    assert t.caps == Caps(aci=3, pca=5)
    assert all(len(s) == 2 and all(x > 0 for x in s) for s in t.seconds.values())
    assert t.profile_ratio == pytest.approx(t.median(CAPTURE_PROFILE) / t.plain)
    assert t.profile_passed == (t.profile_ratio <= bench.TIME_TARGET)
    # the callback clock stays on 'capture': one entry per repeat, not per capture variant
    assert all(len(spent) == 2 for spent in t.callback_seconds.values())


def test_timing_without_the_profile_variant_has_no_profile_ratio(timing):
    assert timing.caps is None and timing.profile_share is None
    assert timing.profile_ratio is None and timing.profile_passed is None


@pytest.mark.parametrize("variants, caps", [
    ((PLAIN, CAPTURE, CAPTURE_PROFILE), None),
    ((PLAIN, CAPTURE, CAPTURE_PROFILE), Caps(aci=2)),                   # PCA cap missing
    ((PLAIN, CAPTURE, CAPTURE_PROFILE), Caps(pca=2)),                   # ACI cap missing
    ((PLAIN, CAPTURE), Caps(aci=2, pca=2)),
    ((PLAIN, CAPTURE, CAPTURE_PROFILE), Caps(aci=0, pca=2)),
    ((PLAIN, CAPTURE, CAPTURE_PROFILE), Caps(aci=2, pca=0)),
    ((PLAIN, CAPTURE, CAPTURE_PROFILE_NO_ACI), None),
    ((PLAIN, CAPTURE, CAPTURE_PROFILE_NO_ACI), Caps(pca=2)),
])
def test_caps_are_given_exactly_with_the_profile_variant(spec, variants, caps):
    with pytest.raises(ValueError):
        time_passes(spec.build(), random_images(4, 1, 28), 4, 1, variants=variants, caps=caps)


def test_profile_variant_needs_both_caps(spec):
    config = PassConfig(batch_size=4, progress=False)
    with pytest.raises(ValueError, match="caps"):
        bench.run_variant(CAPTURE_PROFILE, spec.build(), random_images(4, 1, 28), config,
                          caps=Caps(aci=2))


def test_profile_variant_caps_the_aci_and_the_pca(spec, monkeypatch):
    built = []

    def recording_sweep_accumulators(*args, **kwargs):
        built.append(sweep_accumulators(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(timing_module, "sweep_accumulators", recording_sweep_accumulators)
    model, data = spec.build(), random_images(8, 1, 28)
    config = PassConfig(batch_size=4, progress=False)  # two batches: the cap ends inside the first
    for variant in (CAPTURE_PROFILE, CAPTURE):  # the PCA cap ends inside the second batch
        bench.run_variant(variant, model, data, config, caps=Caps(aci=3, pca=5))
    profile, every = ([a for a in sinks if isinstance(a, AttentionGraph)] for sinks in built)
    assert len(profile) == len(every) == 1
    profile_rows, every_rows = profile[0].result(), every[0].result()
    assert (profile_rows["aci_images"] == 3).all() and (profile_rows["images"] == 8).all()
    assert (every_rows["aci_images"] == 8).all()  # 'capture' ignores aci_images

    profile, every = ([a for a in sinks if isinstance(a, TokenMoments)] for sinks in built)
    assert len(profile) == len(every) == 1
    profile, every = profile[0], every[0]
    assert profile.max_images == 5 and every.max_images is None  # 'capture' ignores pca_images
    counts = [key for key in every.sums if key.endswith("/count")]
    assert counts and set(counts) == {key for key in profile.sums if key.endswith("/count")}
    for key in counts:  # tokens counted per layer: the moments' image count is pca_images
        tokens_per_image = every.sums[key] / 8
        assert tokens_per_image >= 1 and tokens_per_image == int(tokens_per_image), key
        assert profile.sums[key] / tokens_per_image == 5, key


def test_no_aci_variant_leaves_out_the_aci_only(spec, monkeypatch):
    """'capture, caps, no ACI': every accumulator, the PCA capped, the ACI on no image while the
    rest of the attention metrics see every image."""
    built = []

    def recording_sweep_accumulators(*args, **kwargs):
        built.append(sweep_accumulators(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(timing_module, "sweep_accumulators", recording_sweep_accumulators)
    config = PassConfig(batch_size=4, progress=False)
    model = spec.build()
    bench.run_variant(CAPTURE_PROFILE_NO_ACI, model, random_images(8, 1, 28), config,
                      caps=Caps(aci=3, pca=5))
    (sinks,) = built
    assert _names(sinks) == _names(sweep_accumulators(model))
    (graph,) = [a for a in sinks if isinstance(a, AttentionGraph)]
    (moments,) = [a for a in sinks if isinstance(a, TokenMoments)]
    assert moments.max_images == 5
    for block in range(1, TINY.depth + 1):
        assert graph.sums[f"{block}/aci_images"] == 0 and float(graph.sums[f"{block}/aci"]) == 0
        assert graph.sums[f"{block}/images"] == 8 and f"{block}/ccc" in graph.sums


def test_geometry_pass_runs_what_the_book_runs(spec, monkeypatch):
    """'geometry pass' is analysis.geometry_tables: token similarity and top-1 with the fused
    attention, and its tables come out as in the book."""
    import vitphase_lib.analysis as analysis
    real_run_pass, calls, tables = analysis.run_pass, [], []

    def recording_run_pass(model, dataset, sinks, config, attention=None, desc="pass"):
        calls.append(([type(s).__name__ for s in sinks], attention))
        real_run_pass(model, dataset, sinks, config, attention=attention, desc=desc)

    def recording_geometry_tables(*args, **kwargs):
        tables.append(real_geometry_tables(*args, **kwargs))
        return tables[-1]

    real_geometry_tables = analysis.geometry_tables
    monkeypatch.setattr(analysis, "run_pass", recording_run_pass)
    monkeypatch.setattr(analysis, "geometry_tables", recording_geometry_tables)
    config = PassConfig(batch_size=4, progress=False)
    seconds = bench.run_variant(GEOMETRY_PASS, spec.build(), random_images(8, 1, 28), config)
    assert seconds > 0
    assert calls == [(["TokenGeometry", "Top1"], False)]
    (result,) = tables
    assert len(result["per_layer"]) == TINY.depth + 3  # raw, pe, the blocks, head
    assert 0 <= float(result["summary"]["top1"].iloc[0]) <= 100  # percent


def test_full_plan_times_the_geometry_pass():
    assert GEOMETRY_PASS in bench.default_plan(quick=False).variants


def test_report_shows_the_geometry_pass(spec):
    t = time_passes(spec.build(), random_images(4, 1, 28), batch_size=4, repeats=1,
                    variants=(PLAIN, CAPTURE, GEOMETRY_PASS), label="tiny")
    text = format_report(BenchReport(device="cpu", threads=1, timings=[t], memory=[], seconds=1.0))
    geometry = t.median(GEOMETRY_PASS)
    assert f"{geometry * 1e3:.0f} ms ({geometry / t.plain:.2f}x)" in text
    assert "once per alpha of the PE-scaling sweep" in text


def test_report_shows_the_no_aci_floor(spec):
    t = time_passes(spec.build(), random_images(4, 1, 28), batch_size=4, repeats=1,
                    variants=(PLAIN, CAPTURE, CAPTURE_PROFILE, CAPTURE_PROFILE_NO_ACI),
                    label="tiny", caps=Caps(aci=2, pca=2))
    text = format_report(BenchReport(device="cpu", threads=1, timings=[t], memory=[], seconds=1.0))
    assert "Where the overhead goes" in text and CAPTURE_PROFILE_NO_ACI in text
    floor = t.median(CAPTURE_PROFILE_NO_ACI)
    assert f"{floor * 1e3:.0f} ms ({floor / t.plain:.2f}x)" in text
    assert "if |lambda_2| were free" in text


def test_run_benchmark_caps_the_aci_at_the_profile_share(spec):
    plan = BenchPlan(cases=(BenchCase(spec, timing_images=8, memory_n=None, profile="default"),
                            BenchCase(spec, timing_images=4, memory_n=None)),
                     repeats=1, variants=(PLAIN, CAPTURE, CAPTURE_PROFILE))
    profiled, unprofiled = run_benchmark(plan, log=lambda message: None).timings
    assert profiled.profile_share == ProfileShare.read("default")
    assert profiled.caps == Caps(2, 2, 1)  # 8 * 512 / 2000 = 2.05; heads: 8 * 128 / 2000
    assert profiled.per_head and "AttentionHeads" in profiled.accumulators
    assert profiled.profile_ratio is not None
    assert CAPTURE_PROFILE not in unprofiled.seconds and unprofiled.profile_share is None
    assert unprofiled.caps is None and not unprofiled.per_head


def test_run_benchmark_logs_both_profile_caps(spec):
    messages = []
    plan = BenchPlan(cases=(BenchCase(spec, timing_images=8, memory_n=None, profile="default"),),
                     repeats=1, variants=(PLAIN, CAPTURE, CAPTURE_PROFILE))
    run_benchmark(plan, log=messages.append)
    assert any("profile caps: ACI on 2, PCA on 2 images" in m for m in messages)


def test_report_shows_the_profile_ratio(profile_timing):
    t = replace(profile_timing, profile_share=ProfileShare("default", 512, 256, 2000))
    text = format_report(BenchReport(device="cpu", threads=1, timings=[t], memory=[], seconds=1.0))
    assert "profile caps" in text and "profile ratio" in text and "ratio, every img" in text
    assert "profile ACI" not in text
    assert "ACI 3, PCA 5 of 8 img" in text
    assert f"{t.profile_ratio:.2f}x" in text and f"{t.ratio:.2f}x" in text
    assert "tiny: default ACI 512, PCA 256 of 2000 img -> ACI 3, PCA 5 of 8 img" in text
    assert "aci_max_images / pca_max_images / n_images" in text
    assert "runs both on every image" in text and "worst case" in text
    assert text.count("PASS") + text.count("MISS") == 2  # every-image and profile verdicts
    assert "Where the overhead goes" not in text  # the profile variant is in the main table


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
        # the child saw the fixed allocator threshold (or the one this environment sets)
        assert result.mmap_threshold == bench.child_environment()["MALLOC_MMAP_THRESHOLD_"]
    assert scaling.ratio == pytest.approx(scaling.large.peak_rss_mb / scaling.small.peak_rss_mb)
    assert scaling.passed == (scaling.ratio <= bench.MEMORY_TARGET)

    report = BenchReport(device="cpu", threads=torch.get_num_threads(), timings=[timing],
                         memory=[scaling], seconds=1.0)
    text = format_report(report)
    assert "tiny" in text and "TokenGeometry" in text
    assert f"{timing.ratio:.2f}x" in text and f"{scaling.ratio:.3f}x" in text
    assert text.count("PASS") + text.count("MISS") == 2
    assert "Where the overhead goes" in text and "Time inside each accumulator" in text
    assert "ru_maxrss" in text
    assert f"(MALLOC_MMAP_THRESHOLD_): {scaling.small.mmap_threshold} " in text


def test_memory_children_fix_the_allocator_threshold_and_keep_the_environment(monkeypatch):
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    monkeypatch.setenv("VITPHASE_TEST_MARKER", "kept")
    env = bench.child_environment()
    assert env["MALLOC_MMAP_THRESHOLD_"] == str(128 * 1024)
    assert env["VITPHASE_TEST_MARKER"] == "kept" and env["PATH"] == os.environ["PATH"]
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")  # a user's own setting wins
    assert bench.child_environment()["MALLOC_MMAP_THRESHOLD_"] == "65536"


def test_report_says_whether_the_allocator_threshold_was_fixed(timing):
    result = bench.MemoryResult(images=4, peak_rss_mb=900.0, before_pass_rss_mb=800.0,
                                ru_maxrss_mb=900.0, peak_source="VmHWM", cuda_peak_mb=None,
                                seconds=1.0, mmap_threshold="131072")
    fixed = bench.MemoryScaling(model="tiny", device="cpu", batch_size=4, small=result,
                                large=replace(result, images=16))
    dynamic = replace(fixed, large=replace(result, images=16, mmap_threshold=None))
    for scaling, says in ((fixed, "131072 (fixed"), (dynamic, "131072, dynamic (dynamic")):
        text = format_report(BenchReport(device="cpu", threads=1, timings=[timing],
                                         memory=[scaling], seconds=1.0))
        assert f"(MALLOC_MMAP_THRESHOLD_): {says}" in text


def test_cpu_times_read_the_steal_column_of_proc_stat(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text("cpu  100 5 50 800 10 1 2 32 7 0\ncpu0 50 2 25 400 5 0 1 16 3 0\n")
    assert bench.cpu_times(str(stat)) == (32, 1000)  # steal, user..steal (guest is in user)
    stat.write_text("cpu  100 5 50 800 10 1 2\n")  # a kernel without the steal column
    assert bench.cpu_times(str(stat)) is None
    assert bench.cpu_times(str(tmp_path / "missing")) is None


def test_steal_between_two_readings():
    assert bench.steal_between((30, 1000), (80, 2000)) == pytest.approx(0.05)
    assert bench.steal_between(None, (80, 2000)) is None
    assert bench.steal_between((30, 1000), (30, 1000)) is None  # no time passed


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="needs Linux's /proc/stat")
def test_run_benchmark_records_the_steal_while_timing(spec):
    plan = BenchPlan(cases=(BenchCase(spec, timing_images=4, memory_n=None),), repeats=1,
                     variants=(PLAIN, CAPTURE))
    (timing,) = run_benchmark(plan, log=lambda message: None).timings
    assert timing.steal_share is not None and 0 <= timing.steal_share <= 1


def test_report_gives_the_steal_and_warns_when_it_is_high(timing):
    def report(*shares):
        timings = [replace(timing, model=f"m{i}", steal_share=share)
                   for i, share in enumerate(shares)]
        return format_report(BenchReport(device="cpu", threads=1, timings=timings, memory=[],
                                         seconds=1.0))
    calm, shared = report(0.01, None), report(0.01, 0.33)
    assert "(steal, /proc/stat): m0 1%.\n" in calm + "\n"  # m1, unmeasured, is not named
    assert "m0 1%, m1 33%. Above 5% the machine was shared" in shared
    assert "hypervisor" not in report(None)


def test_report_names_models_whose_memory_was_not_measured(timing):
    report = BenchReport(device="cpu", threads=1, timings=[timing], memory=[], seconds=1.0)
    text = format_report(report)
    assert "memory not measured for tiny" in text
    assert text.count("PASS") + text.count("MISS") == 1


def test_quick_plan_is_smaller_than_the_full_plan():
    quick, full = bench.default_plan(True), bench.default_plan(False)
    assert quick.repeats < full.repeats
    assert {c.spec.label for c in full.cases} == {"mini-b", "ViT-B/16"}
    assert all(c.memory_n is not None for c in full.cases)
    for case in full.cases:  # n is a whole number of batches, so 4n only adds batches
        assert case.memory_n % case.memory_spec.batch_size == 0
    mini = next(c for c in full.cases if c.spec.label == "mini-b")
    assert mini.spec.batch_size == 250 and mini.spec.kind == "mini"


def test_both_plans_time_the_profile_variant_with_the_book_profiles():
    assert CAPTURE_PROFILE_NO_ACI in bench.default_plan(False).variants
    for plan in (bench.default_plan(True), bench.default_plan(False)):
        assert CAPTURE_PROFILE in plan.variants
        assert {c.spec.label: c.profile for c in plan.cases} == {"mini-b": "default", "ViT-B/16": "paper"}
        for case in plan.cases:
            share = ProfileShare.read(case.profile)
            for cap in ("aci", "pca"):
                assert 1 <= share.images(case.timing_images, cap) <= case.timing_images


def test_monitor_is_timed_beside_a_training_epoch():
    from vitphase_lib.bench.monitor import TARGET, format_monitor, time_monitor
    timing = time_monitor("tiny-s", repeats=1, steps=2, probe_images=32)
    assert timing.steps_per_epoch == 938  # 60 000 images in batches of 64 (tiny-s's recipe)
    assert timing.step_seconds > 0 and timing.default_seconds > 0 and timing.zoo_seconds > 0
    assert timing.epoch_seconds == timing.step_seconds * 938
    report = format_monitor(timing)
    assert ("PASS" if timing.default_share <= TARGET else "MISS") in report
    assert f"{timing.zoo_share:.1%}" in report


# --------------------------------------------------------------------------- JSON results
REPO = Path(__file__).resolve().parents[1]


def _report(profile_timing) -> BenchReport:
    result = bench.MemoryResult(images=4, peak_rss_mb=900.0, before_pass_rss_mb=800.0,
                                ru_maxrss_mb=900.0, peak_source="VmHWM", cuda_peak_mb=None,
                                seconds=1.0, mmap_threshold="131072")
    memory = bench.MemoryScaling(model="tiny", device="cpu", batch_size=4, small=result,
                                 large=replace(result, images=16, peak_rss_mb=909.0))
    monitor = bench.MonitorTiming(model="tiny-s", step_seconds=0.01, steps_per_epoch=938,
                                  default_seconds=0.2, zoo_seconds=0.3, probe_images=32)
    timing = replace(profile_timing, profile_share=ProfileShare("default", 512, 512, 2000))
    return BenchReport(device="cpu", threads=1, timings=[timing], memory=[memory], seconds=12.0,
                       quick=True, monitor=monitor)


def test_the_json_result_holds_every_number_and_the_machine(profile_timing, tmp_path):
    report = _report(profile_timing)
    record = json.loads(json.dumps(bench.to_record(report)))  # plain JSON types only
    assert record["quick"] and "quick run" in record["note"]
    assert {"cpu", "cores", "torch", "python", "device", "torch_threads"} <= set(record["machine"])
    (timing,) = record["timings"]
    t = report.timings[0]
    assert timing["seconds"] == t.seconds and timing["caps"] == {"aci": 3, "pca": 5, "head_aci": None}
    assert timing["ratios"][CAPTURE_PROFILE] == pytest.approx(t.profile_ratio)
    assert timing["profile_passed"] == t.profile_passed
    assert record["memory"][0]["ratio"] == pytest.approx(909 / 900)
    assert record["monitor"]["default_share"] == pytest.approx(report.monitor.default_share)

    first = bench.write_record(record, tmp_path)
    assert first.name == f"{record['date']}-{bench.results.slug(record['machine']['cpu'])}.json"
    later = {**record, "created": "9999-01-01T00:00:00+00:00"}
    second = bench.write_record(later, tmp_path)  # same day and CPU: a new name
    assert second != first and second.stem.endswith("-2")
    assert bench.latest_record(tmp_path) == later


def test_readme_table_is_rendered_from_the_json(profile_timing):
    record = json.loads(json.dumps(bench.to_record(_report(profile_timing))))
    table = bench.readme_table(record)
    t = profile_timing
    assert f"{t.plain * 1e3:.0f} ms" in table and f"{t.ratio:.2f}x" in table
    assert f"**{t.profile_ratio:.2f}x, {'pass' if t.profile_passed else 'miss'}**" in table
    assert "1.010x, pass (4 / 16 images)" in table and "quick run" in table
    appendix = bench.results.appendix_tables(record)
    assert "TokenGeometry" in appendix and "Training-time monitor" in appendix


def test_fill_replaces_only_the_text_between_the_markers():
    text = "a\n<!-- bench:table start -->\nold\nlines\n<!-- bench:table end -->\nb\n"
    assert (bench.results.fill(text, "table", "new")
            == "a\n<!-- bench:table start -->\nnew\n<!-- bench:table end -->\nb\n")
    with pytest.raises(ValueError):
        bench.results.fill(text, "latest", "new")


def _between_markers(path: Path, name: str) -> str:
    text = path.read_text()
    start, end = f"<!-- bench:{name} start -->\n", f"\n<!-- bench:{name} end -->"
    return text[text.index(start) + len(start):text.index(end)]


def test_readme_and_book_tables_are_the_latest_committed_result():
    """The README's benchmark table and the book's are what the latest result in
    benchmarks/results renders (`vitphase bench --render` refills them)."""
    record = bench.latest_record(REPO / "benchmarks" / "results")
    assert record is not None, "no result in benchmarks/results: run `vitphase bench`"
    assert _between_markers(REPO / "README.md", "table") == bench.readme_table(record)
    assert (_between_markers(REPO / "book" / "engineering_notes.md", "latest")
            == bench.results.appendix_tables(record))
