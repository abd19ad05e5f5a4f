"""timm's ViT family beyond VisionTransformer (capture.FAMILIES): Eva (EVA-02, RoPE ViTs, DINOv3),
Beit and VisionTransformerRelPos, random-init; small (depth 2-3, width 64, 4 x 4 patches) for
speed, besides the two models named in issue #33 at their own size.

Checked per model: traced logits and features equal untraced ones, with the attention in chunks
smaller than the batch; the layer list and the ``pe`` layer rule (capture's docstring); the PE
metrics reported as not applicable, with the reason, where there is no additive position
embedding; and the analysis tables finite wherever they apply."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import timm
import torch

from vitphase_lib import capture
from vitphase_lib.analysis import PassConfig, full_analysis_tables, geometry_tables, pe_scaling_tables
from vitphase_lib.capture import (FAMILIES, images_per_attention_chunk, patch_positional_embedding,
                                  scaled_positional_encoding, trace, vit_layout)
from vitphase_lib.data import synthetic_images
from vitphase_lib.metrics import phase_table
from vitphase_lib.models import UnsupportedModelError, check_vit

ROPE = "no additive position embedding: rotary (RoPE) in attention"
RELATIVE = "no additive position embedding: relative position bias in attention"
SMALL = dict(depth=2, embed_dim=64, num_heads=2)

# name, create_model kwargs, image size, expected pe_note, what the case covers
CASES = {
    "eva02": ("eva02_tiny_patch14_224", dict(SMALL, img_size=56), 56, "",
              "Eva: pos_embed and RoPE (the PE metrics apply), avg-pooled, [CLS]"),
    "rope-mixed": ("vit_small_patch16_rope_mixed_224", dict(SMALL, img_size=64), 64, ROPE,
                   "Eva with timm's AttentionRope: RoPE only, one rotary embedding per block"),
    "dinov3": ("vit_small_patch16_dinov3", dict(SMALL, img_size=64), 64, ROPE,
               "Eva: RoPE only, [CLS] + 4 registers, dynamic image size (NHWC patch embedding)"),
    "relpos": ("vit_relpos_small_patch16_224", dict(SMALL, img_size=64), 64, RELATIVE,
               "VisionTransformerRelPos: relative bias MLP in each block, no [CLS]"),
    "srelpos": ("vit_srelpos_small_patch16_224", dict(SMALL, img_size=64), 64, RELATIVE,
                "VisionTransformerRelPos: one (1, heads, T, T) bias passed to every block"),
    "beit": ("beit_base_patch16_224", dict(SMALL, img_size=64), 64, RELATIVE,
             "Beit: relative bias table in each block's attention"),
    "beit-shared": ("beit_base_patch16_224",
                    dict(SMALL, img_size=64, use_abs_pos_emb=True, use_rel_pos_bias=False,
                         use_shared_rel_pos_bias=True), 64, "",
                    "Beit: pos_embed and one (heads, T, T) bias passed to every block"),
}


def create(case: str, **overrides) -> tuple[torch.nn.Module, int]:
    name, kwargs, size, _, _ = CASES[case]
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, **{**kwargs, **overrides}).eval()
    return model, size


class Recorder:
    """A sink that copies everything it is given, in the order it is given."""

    def __init__(self):
        self.order: list[str] = []
        self.tokens: dict[str, torch.Tensor] = {}
        self.attention: dict[int, torch.Tensor] = {}

    def on_tokens(self, layer, tokens):
        self.order.append(layer)
        self.tokens[layer] = tokens.detach().clone()

    def on_attention(self, block, attention):
        self.attention[block] = attention.detach().clone()


def assert_close_to_scale(actual, expected, rel=1e-5):
    actual, expected = actual.detach(), expected.detach()
    scale = float(expected.abs().max())
    assert torch.allclose(actual, expected, rtol=0, atol=rel * max(scale, 1e-6)), \
        float((actual - expected).abs().max())


def no_hooks_left(model: torch.nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks and "forward" not in vars(m)
               for m in model.modules())


def images_at_a_time(model: torch.nn.Module, images: int, tokens: int, monkeypatch) -> None:
    """Sets the CPU budget so that the traced attention runs ``images`` images at a time."""
    heads = model.blocks[0].attn.num_heads
    per_image = heads * tokens * tokens * 4
    threads = torch.get_num_threads()
    monkeypatch.setattr(capture, "CPU_ATTENTION_BYTES_PER_THREAD", images * per_image // threads + 1)
    assert images_per_attention_chunk(torch.device("cpu"), heads, tokens, 100) == images


# --------------------------------------------------------------------------- tracing
@pytest.mark.parametrize("case", list(CASES))
def test_traced_equals_untraced_with_attention_in_chunks(case, monkeypatch):
    """A batch of 5 with a budget of 2 images: the rotary embedding / shared relative bias each
    block's attention gets is handed whole to every chunk ([2, 2, 1] images), and the logits,
    features and attention equal the untraced model's and the whole batch's."""
    model, size = create(case)
    layout = vit_layout(model)
    tokens = layout.num_prefix_tokens + layout.num_patches
    images = torch.randn(5, 3, size, size, generator=torch.Generator().manual_seed(1))
    seen: list[int] = []  # images per unfused call of block 1's attention
    hook = model.blocks[0].attn.attn_drop.register_forward_hook(
        lambda module, args, weights: seen.append(weights.shape[0]))
    chunked, whole = Recorder(), Recorder()
    with torch.inference_mode():
        features = model.forward_features(images)
        untraced = model(images)
        images_at_a_time(model, 2, tokens, monkeypatch)
        with trace(model, [chunked]):
            traced = model(images)
        images_at_a_time(model, 5, tokens, monkeypatch)
        with trace(model, [whole]):
            model(images)
    hook.remove()
    assert seen == [2, 2, 1, 5]
    assert_close_to_scale(traced, untraced)
    assert_close_to_scale(chunked.tokens["head"], features)  # the logits of a random head are tiny
    assert chunked.order == layout.layer_names == ["raw", "pe", "1", "2", "head"]
    assert chunked.tokens["raw"].shape == (5, layout.num_patches, layout.width)
    for layer in layout.layer_names[1:]:
        assert chunked.tokens[layer].shape == (5, tokens, layout.width), layer
    assert sorted(chunked.attention) == [1, 2]
    for block, attention in chunked.attention.items():
        assert attention.shape == (5, tokens, tokens) and attention.dtype == torch.float32
        torch.testing.assert_close(attention.sum(-1), torch.ones(5, tokens), rtol=0, atol=1e-5)
        assert_close_to_scale(attention, whole.attention[block], rel=1e-5)
    assert no_hooks_left(model)
    assert all(block.attn.fused_attn for block in model.blocks)


@pytest.mark.parametrize("name, pe_note", [("eva02_tiny_patch14_224", ""),
                                            ("vit_relpos_small_patch16_224", RELATIVE)])
def test_full_size_models_traced_equal_untraced(name, pe_note, monkeypatch):
    """The models named in the issue at their own size (12 blocks, 224 px), one image at a time."""
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False).eval()
    layout = vit_layout(model)
    patches = 256 if name.startswith("eva02") else 196  # 224 px in patches of 14 / 16
    assert (layout.num_blocks, layout.num_patches, layout.pe_note) == (12, patches, pe_note)
    images = torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    rec = Recorder()
    with torch.inference_mode():
        features, untraced = model.forward_features(images), model(images)
        images_at_a_time(model, 1, layout.num_prefix_tokens + layout.num_patches, monkeypatch)
        with trace(model, [rec]):
            traced = model(images)
    assert_close_to_scale(traced, untraced)
    assert_close_to_scale(rec.tokens["head"], features)
    assert sorted(rec.attention) == list(range(1, 13))


@pytest.mark.parametrize("case", list(CASES))
def test_layout_and_the_pe_layer_rule(case):
    """``pe`` is the blocks' input: prefix tokens prepended and, where the model has one, the
    additive position embedding added; without one its patch tokens are exactly ``raw``."""
    model, size = create(case)
    layout = vit_layout(model)
    note = CASES[case][3]
    assert layout.pe_note == note
    assert layout.num_patches == 16 and layout.num_blocks == 2 and layout.width == 64
    assert layout.has_cls == (model.cls_token is not None)
    assert layout.num_prefix_tokens == model.num_prefix_tokens
    rec = Recorder()
    image = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode(), trace(model, [rec], attention=False):
        model(image)
    prefix = layout.num_prefix_tokens
    patches = rec.tokens["pe"][:, prefix:]
    if note:
        assert torch.equal(patches, rec.tokens["raw"])
        with pytest.raises(UnsupportedModelError, match="PE Dominance Ratio"):
            patch_positional_embedding(model)
    else:
        assert_close_to_scale(patches - rec.tokens["raw"],
                              patch_positional_embedding(model).expand_as(patches))
    if layout.has_cls:
        cls = model.cls_token[0, 0] + (model.pos_embed[0, 0] if not note else 0)
        assert_close_to_scale(rec.tokens["pe"][:, 0], cls.expand(2, -1))


def test_dinov3_registers_follow_cls():
    model, size = create("dinov3")
    layout = vit_layout(model)
    assert (layout.num_prefix_tokens, layout.has_cls, layout.cls_index) == (5, True, 0)
    rec = Recorder()
    with torch.inference_mode(), trace(model, [rec], attention=False):
        model(torch.randn(1, 3, size, size))
    assert_close_to_scale(rec.tokens["pe"][0, 1:5], model.reg_token[0])


def test_eva_patch_dropout_gives_a_rotary_embedding_per_image(monkeypatch):
    """In training, Eva's patch dropout keeps other patches in each image and hands the blocks a
    (B, 1, N, d) rotary embedding: the traced attention then runs the batch whole."""
    model, size = create("eva02", patch_drop_rate=0.5)
    model.train()
    images = torch.randn(4, 3, size, size, generator=torch.Generator().manual_seed(3))
    images_at_a_time(model, 1, 1 + 8, monkeypatch)
    seen: list[int] = []
    model.blocks[0].attn.attn_drop.register_forward_hook(
        lambda module, args, weights: seen.append(weights.shape[0]))
    with torch.no_grad():
        torch.manual_seed(4)
        untraced = model.forward_features(images)
        torch.manual_seed(4)
        with trace(model, [Recorder()]):
            traced = model.forward_features(images)
    assert seen == [4]  # the traced call, in one piece (the untraced one ran fused)
    assert traced.shape == (4, 1 + 8, 64)  # half the 16 patches kept
    assert_close_to_scale(traced, untraced)


@pytest.mark.parametrize("value, per_image", [
    (None, False), (True, False), (3, False),
    (torch.zeros(17, 17), False),          # a mask shared by every image
    (torch.zeros(4, 17, 17), False),       # BEiT's shared bias: (heads, T, T)
    (torch.zeros(1, 4, 17, 17), False),    # RelPos's shared bias: (1, heads, T, T)
    (torch.zeros(16, 64), False),          # a rotary embedding (N, 2 d)
    (torch.zeros(2, 16, 64), False),       # mixed RoPE, one block: (heads, N, 2 d)
    (torch.zeros(5, 1, 17, 17), True),     # a mask per image
    (torch.zeros(5, 1, 16, 64), True),     # Eva's rotary embedding under patch dropout
    ([torch.zeros(3)], True),              # anything else: run the batch whole
])
def test_which_attention_arguments_hold_a_row_per_image(value, per_image):
    assert capture._per_image(value) is per_image


# --------------------------------------------------------------------------- PE scaling
@pytest.mark.parametrize("case, reason", [("rope-mixed", "rotary"),
                                          ("relpos", "relative position bias"),
                                          ("beit", "relative position bias")])
def test_pe_scaling_without_additive_embedding_names_the_reason(case, reason):
    model, _ = create(case)
    with pytest.raises(UnsupportedModelError, match=f"PE scaling needs an additive.*{reason}"):
        with scaled_positional_encoding(model, 0.5):
            pass


def test_pe_scaling_of_eva02_scales_pos_embed_alone():
    """EVA-02 has pos_embed and RoPE: alpha scales pos_embed; the rotary embedding stays."""
    model, size = create("eva02")
    original = model.pos_embed.detach().clone()
    rope = model.rope.get_embed().clone()
    rec = Recorder()
    image = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        with scaled_positional_encoding(model, 0.0), trace(model, [rec], attention=False):
            model(image)
            assert torch.equal(model.rope.get_embed(), rope)
    assert torch.equal(rec.tokens["pe"][:, 1:], rec.tokens["raw"])
    assert torch.equal(model.pos_embed, original)


def test_pe_scaling_tables_refuse_before_any_pass():
    model, size = create("relpos")
    data = synthetic_images(n=4, num_classes=4, size=size, channels=3).as_dataset()
    with pytest.raises(UnsupportedModelError, match="relative position bias"):
        pe_scaling_tables(model, data, [0.0, 1.0], PassConfig(batch_size=4, progress=False))


# --------------------------------------------------------------------------- refusals
def test_an_unsupported_vit_class_is_refused_with_the_supported_list():
    model = timm.create_model("naflexvit_base_patch16_gap", pretrained=False, depth=1)
    with pytest.raises(UnsupportedModelError) as error:
        check_vit(model)
    assert str(error.value).startswith("NaFlexVit is not a timm VisionTransformer")
    for family in FAMILIES:
        assert family.model_class.__name__ in str(error.value)
    assert [f.model_class.__name__ for f in FAMILIES] == [
        "VisionTransformer", "Eva", "Beit", "VisionTransformerRelPos"]


# --------------------------------------------------------------------------- analysis tables
ANALYSED = ["eva02", "relpos", "beit"]


@pytest.fixture(scope="module")
def analysed():
    """full_analysis_tables on three small random-init models: 3 blocks, 4 classes, 16 images
    per sweep, one torch thread, 2 InfoX dimensions."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        tables = {}
        for case in ANALYSED:
            model, size = create(case, depth=3, num_classes=4)
            sets = {name: synthetic_images(n=16, num_classes=4, size=size, channels=3,
                                           seed=seed).as_dataset()
                    for name, seed in (("analysis_set", 0), ("fit_set", 1), ("score_set", 2))}
            config = PassConfig(batch_size=6, progress=False)
            tables[case] = {
                "full": full_analysis_tables(model, **sets, num_classes=4, config=config,
                                             infox_dims=2),
                "geometry": geometry_tables(model, sets["analysis_set"], config),
                "layout": vit_layout(model)}
        return tables
    finally:
        torch.set_num_threads(threads)


def not_applicable(layout, table: str) -> set[str]:
    """The columns of ``table`` that are NaN by design for this layout."""
    columns = set()
    if layout.pe_note and table == "summary":
        columns |= {"pe_norm", "pe_dominance_ratio"}
    if not layout.has_cls and table == "attention":
        columns |= {"cls_centrality", "cls_pagerank_share"}
    return columns


def assert_finite(frame: pd.DataFrame, skip: set[str], name: str) -> None:
    numeric = [c for c in frame.select_dtypes("number").columns if c not in skip]
    assert len(frame) and numeric, name
    values = frame[numeric].to_numpy(float)
    # an infinite ridge_all is a choice (the all decoder is then the self decoder), not a failure
    chosen_infinite = (np.array(numeric) == "ridge_all") & (values == np.inf)
    finite = np.isfinite(values) | chosen_infinite
    assert finite.all(), (name, [c for c, ok in zip(numeric, finite.all(0)) if not ok])
    for column in skip:
        assert frame[column].isna().all(), (name, column)


@pytest.mark.parametrize("case", ANALYSED)
def test_analysis_tables_are_finite_where_they_apply(analysed, case):
    result = analysed[case]
    layout = result["layout"]
    for kind in ("full", "geometry"):
        for name, frame in result[kind].items():
            assert_finite(frame, not_applicable(layout, name), f"{kind}/{name}")
    full = result["full"]
    assert list(full["per_layer"].layer) == ["raw", "pe", "1", "2", "3", "head"]
    summary = full["summary"].iloc[0]
    assert summary["pe_note"] == CASES[case][3]
    assert (summary["pe_dominance_ratio"] > 0) == (not layout.pe_note)
    assert list(full["attention"].block) == [1, 2, 3]
    assert len(phase_table(full["per_layer"].assign(model=case))) == 1


def test_without_additive_embedding_the_pe_layer_is_the_raw_layer(analysed):
    per_layer = analysed["relpos"]["full"]["per_layer"].set_index("layer")
    columns = ["centered_similarity", "raw_similarity", "mean_token_norm"]
    np.testing.assert_allclose(per_layer.loc["pe", columns], per_layer.loc["raw", columns], rtol=1e-6)
    assert math.isnan(analysed["relpos"]["geometry"]["summary"].pe_dominance_ratio.iloc[0])
