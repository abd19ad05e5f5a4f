"""The accumulator contract (vitphase_lib/metrics/base.py), checked for every class in
``metrics.ACCUMULATORS`` on the stream of a tiny random ViT:

1. the same images streamed as one batch, as batches of one image and in uneven batches give
   the same ``result()``, a DataFrame;
2. two ranks, each streaming part of the images, hold the same state keys, and merged give the
   result of one process;
3. the registry is complete, updates name declared states, and ``capture.Sink`` mirrors the
   callbacks of ``Accumulator``.

The model runs once (its callbacks are recorded); every split replays slices of that record, so
the per-image inputs are identical and results differ only by float rounding.
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd
import pytest
import torch

from vitphase_lib import metrics
from vitphase_lib.capture import Sink, ViTLayout, trace
from vitphase_lib.metrics import (ACCUMULATORS, Accumulator, AttentionGraph, AttentionHeads,
                                  CollapseMoments, DecoderFit, DecoderScore, FeatureCollector,
                                  FiniteCheck, NearestClassCenter, RawCKA, TokenGeometry, TokenMoments,
                                  Top1)
from vitphase_lib.metrics.collapse import collapse_table

N_IMAGES, NUM_CLASSES = 12, 4
SPLITS = {"one batch": [12], "batches of 1": [1] * 12, "uneven": [5, 2, 4, 1]}
RANKS = ((0, [4, 3]), (7, [5]))  # (first image, batches): rank 0 streams images 0-6, rank 1 7-11
CALLBACKS = ("begin_batch", "on_tokens", "on_attention", "on_head_attention", "on_logits")


# --------------------------------------------------------------------------- the stream
class _Recorder:
    """A sink that keeps every callback of one forward pass (it reads every head too)."""

    def __init__(self):
        self.events: list[tuple[str, object, torch.Tensor]] = []

    def on_tokens(self, layer, tokens):
        self.events.append(("on_tokens", layer, tokens.clone()))

    def on_attention(self, block, attention):
        self.events.append(("on_attention", block, attention.clone()))

    def on_head_attention(self, block, weights):
        self.events.append(("on_head_attention", block, weights.clone()))


@dataclass
class Stream:
    layout: ViTLayout
    labels: torch.Tensor
    events: list[tuple[str, object, torch.Tensor]]
    logits: torch.Tensor
    earlier: dict = field(default_factory=dict)  # outputs of first passes, built once

    def feed(self, acc: Accumulator, first: int, batches: list[int]) -> Accumulator:
        """Stream images ``first``, ``first + 1``, ... in ``batches`` through ``acc``."""
        start = first
        for i, size in enumerate(batches):
            rows = slice(start, start + size)
            acc.begin_batch(self.labels[rows], start if i == 0 else None)  # then: continues
            for callback, where, tensor in self.events:
                if callback != "on_head_attention" or acc.reads_head_attention():
                    getattr(acc, callback)(where, tensor[rows])
            acc.on_logits(self.logits[rows])
            start += size
        return acc


@pytest.fixture(scope="module")
def stream() -> Stream:
    from timm.models.vision_transformer import VisionTransformer
    torch.manual_seed(0)
    model = VisionTransformer(img_size=28, patch_size=7, in_chans=1, num_classes=NUM_CLASSES,
                              embed_dim=16, depth=2, num_heads=2).eval()
    images = torch.randn(N_IMAGES, 1, 28, 28)
    recorder = _Recorder()
    with torch.no_grad(), trace(model, [recorder]) as layout:
        logits = model(images)
    labels = torch.arange(N_IMAGES) % NUM_CLASSES
    return Stream(layout, labels, recorder.events, logits)


# --------------------------------------------------------------------------- one builder per class
def _whole(stream: Stream, acc: Accumulator) -> Accumulator:
    return stream.feed(acc, 0, [N_IMAGES])


def _decoder_inputs(stream: Stream):
    if "decoders" not in stream.earlier:
        moments = _whole(stream, TokenMoments(stream.layout))
        inputs = {layer: moments.projection(layer, 3) for layer in stream.layout.layer_names}
        target = moments.projection("raw", 3, standardize=True, whiten=False)
        fit = _whole(stream, DecoderFit(stream.layout, inputs, target))
        stream.earlier["decoders"] = inputs, target, fit.decoders(), fit.ridges
    return stream.earlier["decoders"]


def _class_geometry(stream: Stream):
    moments = _whole(stream, CollapseMoments(stream.layout, NUM_CLASSES))
    return collapse_table(moments)[1]


# the caps fall inside a batch of some split: AttentionGraph's inside rank 1's shard, the others
# inside rank 0's (rank 1 then adds zeros, under the same keys)
BUILDERS: dict[type, Callable[[Stream], Accumulator]] = {
    TokenGeometry: lambda s: TokenGeometry(s.layout),
    Top1: lambda s: Top1(s.layout),
    FiniteCheck: lambda s: FiniteCheck(s.layout),
    AttentionGraph: lambda s: AttentionGraph(s.layout, aci_max_images=9),
    AttentionHeads: lambda s: AttentionHeads(s.layout, aci_max_images=3),
    CollapseMoments: lambda s: CollapseMoments(s.layout, NUM_CLASSES),
    NearestClassCenter: lambda s: NearestClassCenter(s.layout, _class_geometry(s)),
    TokenMoments: lambda s: TokenMoments(s.layout, max_images=5),
    DecoderFit: lambda s: DecoderFit(s.layout, *_decoder_inputs(s)[:2]),
    DecoderScore: lambda s: DecoderScore(s.layout, *_decoder_inputs(s)),
    FeatureCollector: lambda s: FeatureCollector(s.layout, N_IMAGES),
    RawCKA: lambda s: RawCKA(s.layout, max_images=6),
}


def _assert_same_table(got: pd.DataFrame, expected: pd.DataFrame, what: str) -> None:
    assert list(got.columns) == list(expected.columns), what
    assert len(got) == len(expected) > 0, what
    for column in expected.columns:
        if pd.api.types.is_numeric_dtype(expected[column]):
            np.testing.assert_allclose(got[column].to_numpy(float), expected[column].to_numpy(float),
                                       rtol=1e-6, atol=1e-9, equal_nan=True, err_msg=f"{what}: {column}")
        else:
            assert got[column].tolist() == expected[column].tolist(), f"{what}: {column}"


def _keys(acc: Accumulator) -> set[str]:
    return set(acc.sums) | {f"rows:{key}" for key in acc.rows}


# --------------------------------------------------------------------------- the contract
@pytest.mark.parametrize("cls", ACCUMULATORS, ids=lambda cls: cls.__name__)
def test_batches_split_any_way_give_the_result_of_one_batch(cls, stream):
    results = {name: stream.feed(BUILDERS[cls](stream), 0, batches).result()
               for name, batches in SPLITS.items()}
    for name, table in results.items():
        assert isinstance(table, pd.DataFrame), name
        _assert_same_table(table, results["one batch"], f"{cls.__name__}, {name}")


@pytest.mark.parametrize("cls", ACCUMULATORS, ids=lambda cls: cls.__name__)
def test_two_ranks_hold_the_same_keys_and_merge_to_one_process(cls, stream):
    one = stream.feed(BUILDERS[cls](stream), 0, [N_IMAGES])
    ranks = [stream.feed(BUILDERS[cls](stream), first, batches) for first, batches in RANKS]
    assert _keys(ranks[0]) == _keys(ranks[1]) == _keys(one)
    ranks[0].merge(ranks[1])
    _assert_same_table(ranks[0].result(), one.result(), f"{cls.__name__}, merged")


# --------------------------------------------------------------------------- the registry and rules
def _concrete_subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= _concrete_subclasses(sub)
        if not inspect.isabstract(sub):
            found.add(sub)
    return found


def test_the_registry_lists_every_accumulator():
    for info in pkgutil.iter_modules(metrics.__path__):  # every module, exported or not
        importlib.import_module(f"{metrics.__name__}.{info.name}")
    defined = {cls for cls in _concrete_subclasses(Accumulator)
               if cls.__module__.startswith(f"{metrics.__name__}.")}
    assert defined == set(ACCUMULATORS), "add new accumulators to metrics.ACCUMULATORS"
    assert set(BUILDERS) == set(ACCUMULATORS), "give every accumulator a builder here"
    assert len(set(ACCUMULATORS)) == len(ACCUMULATORS)


def test_updates_must_name_a_declared_state():
    layout = ViTLayout(num_blocks=2, num_prefix_tokens=1, has_cls=True, num_patches=4, width=3)
    acc = TokenGeometry(layout)
    acc.add("pe/centered", 1.0)
    for key in ("pe/centred", "centered", "7/centered", "pe/x/centered"):  # name, layer, parts
        with pytest.raises(KeyError, match="add_state"):
            acc.add(key, 1.0)
    with pytest.raises(KeyError, match="'gather'"):
        acc.put_rows("pe/centered", np.zeros((1, 3)))  # a "sum" state
    assert set(acc.sums) == {"pe/centered"}
    with pytest.raises(ValueError, match="reduce"):
        acc.add_state("x", reduce="mean")


def test_result_is_abstract():
    class NoResult(Accumulator):
        def on_tokens(self, layer, tokens):
            pass
    assert inspect.isabstract(NoResult)
    with pytest.raises(TypeError):
        NoResult(ViTLayout(num_blocks=1, num_prefix_tokens=0, has_cls=False, num_patches=4, width=3))


def test_sink_mirrors_the_accumulator_callbacks():
    protocol = [name for name, value in vars(Sink).items()
                if inspect.isfunction(value) and not name.startswith("_")]
    assert protocol == list(CALLBACKS)
    for name in CALLBACKS:
        sink, base = inspect.signature(getattr(Sink, name)), inspect.signature(getattr(Accumulator, name))
        assert list(sink.parameters) == list(base.parameters), name
        assert [p.default for p in sink.parameters.values()] == \
            [p.default for p in base.parameters.values()], name
