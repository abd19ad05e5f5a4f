"""The capture engine (vitphase_lib.capture) on real timm ViTs (random init) and the mini zoo."""
from __future__ import annotations

import math

import pytest
import timm
import torch
from timm.models.vision_transformer import VisionTransformer

from vitphase_lib import capture
from vitphase_lib.capture import (ViTLayout, images_per_attention_chunk, patch_positional_embedding,
                                  scaled_positional_encoding, trace, unfused_attention,
                                  vit_layout)
from vitphase_lib.models import MiniViTConfig, UnsupportedModelError, build_mini_vit, check_vit


class Recorder:
    """A sink that copies everything it is given, in the order it is given."""

    def __init__(self, model: torch.nn.Module | None = None):
        self.model = model
        self.order: list[str] = []
        self.tokens: dict[str, torch.Tensor] = {}
        self.attention: dict[int, torch.Tensor] = {}
        self.fused_during: dict[int, bool] = {}

    def on_tokens(self, layer, tokens):
        self.order.append(layer)
        self.tokens[layer] = tokens.detach().clone()

    def on_attention(self, block, attention):
        self.attention[block] = attention.detach().clone()
        if self.model is not None:
            self.fused_during[block] = bool(self.model.blocks[block - 1].attn.fused_attn)


def manual_attention(block, x: torch.Tensor) -> torch.Tensor:
    """softmax(QK^T / sqrt(d_h)) averaged over heads, from the block's own weights."""
    attn = block.attn
    h = block.norm1(x)
    b, t, _ = h.shape
    qkv = attn.qkv(h).reshape(b, t, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k = attn.q_norm(qkv[0]), attn.k_norm(qkv[1])
    scores = (q @ k.transpose(-2, -1)) * attn.head_dim ** -0.5
    return scores.softmax(dim=-1).mean(dim=1)


def no_hooks_left(model: torch.nn.Module) -> bool:
    """No hook registered and no module's forward replaced (the traced attention's)."""
    return all(not m._forward_hooks and not m._forward_pre_hooks and "forward" not in vars(m)
               for m in model.modules())


def assert_close_to_scale(actual, expected, rel=1e-4):
    scale = float(expected.abs().max())
    assert torch.allclose(actual, expected, rtol=0, atol=rel * max(scale, 1e-6)), \
        float((actual - expected).abs().max())


# --------------------------------------------------------------------------- real-size ViTs
@pytest.fixture(scope="module", params=["vit_base_patch16_224", "vit_large_patch16_224"])
def traced_real_vit(request):
    torch.manual_seed(0)
    model = timm.create_model(request.param, pretrained=False).eval()
    images = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    fused_before = [b.attn.fused_attn for b in model.blocks]
    recorder = Recorder(model)
    with torch.inference_mode():
        untraced = model(images)
        with trace(model, [recorder]) as layout:
            traced = model(images)
    yield dict(name=request.param, model=model, images=images, untraced=untraced, traced=traced,
               recorder=recorder, layout=layout, fused_before=fused_before)
    del model, recorder


def test_real_vit_traced_logits_equal_untraced(traced_real_vit):
    r = traced_real_vit
    assert r["traced"].shape == r["untraced"].shape == (2, 1000)
    assert_close_to_scale(r["traced"], r["untraced"])


def test_real_vit_layout(traced_real_vit):
    r = traced_real_vit
    depth, width = (12, 768) if "base" in r["name"] else (24, 1024)
    assert r["layout"] == ViTLayout(num_blocks=depth, num_prefix_tokens=1, has_cls=True,
                                    num_patches=196, width=width)
    assert r["layout"].cls_index == 0
    assert r["layout"].layer_names == ["raw", "pe"] + [str(i) for i in range(1, depth + 1)] + ["head"]


def test_real_vit_sink_gets_every_layer_with_right_shapes(traced_real_vit):
    r = traced_real_vit
    layout, rec, model = r["layout"], r["recorder"], r["model"]
    assert rec.order == layout.layer_names  # each layer once, in order
    d = layout.width
    assert rec.tokens["raw"].shape == (2, 196, d)
    for layer in layout.layer_names[1:]:
        assert rec.tokens[layer].shape == (2, 197, d), layer
    with torch.inference_mode():
        # raw = the patch embedding, pe = [CLS] prepended + positional embedding
        assert_close_to_scale(rec.tokens["raw"], model.patch_embed(r["images"]))
        pe = model.pos_embed[0]
        assert_close_to_scale(rec.tokens["pe"][:, 1:], rec.tokens["raw"] + pe[1:])
        assert_close_to_scale(rec.tokens["pe"][:, 0], (model.cls_token[0, 0] + pe[0]).expand(2, d))
        # block 1 maps pe to layer 1; head = final norm of the last block; the classifier reads head
        assert_close_to_scale(rec.tokens["1"], model.blocks[0](rec.tokens["pe"]))
        last = str(layout.num_blocks)
        assert_close_to_scale(rec.tokens["head"], model.norm(rec.tokens[last]))
        assert_close_to_scale(model.forward_head(rec.tokens["head"]), r["untraced"])


def test_real_vit_attention_for_every_block(traced_real_vit):
    r = traced_real_vit
    layout, rec, model = r["layout"], r["recorder"], r["model"]
    assert sorted(rec.attention) == list(range(1, layout.num_blocks + 1))
    for block, a in rec.attention.items():
        assert a.shape == (2, 197, 197)
        assert a.dtype == torch.float32
        assert (a >= 0).all()
        torch.testing.assert_close(a.sum(-1), torch.ones(2, 197), rtol=0, atol=1e-5)
    # against a manual softmax(QK^T/sqrt(d)) from the block's input (first and last block)
    with torch.inference_mode():
        first = manual_attention(model.blocks[0], rec.tokens["pe"])
        last_in = rec.tokens[str(layout.num_blocks - 1)]
        last = manual_attention(model.blocks[-1], last_in)
    torch.testing.assert_close(rec.attention[1], first, rtol=0, atol=1e-5)
    torch.testing.assert_close(rec.attention[layout.num_blocks], last, rtol=0, atol=1e-5)
    # the attention is not uniform (the test would not notice a constant map otherwise)
    assert float((rec.attention[1] - 1 / 197).abs().max()) > 1e-3


def test_real_vit_fused_attention_off_while_tracing_and_restored(traced_real_vit):
    r = traced_real_vit
    assert all(r["fused_before"]), "timm should default to fused attention (else the test is moot)"
    assert set(r["recorder"].fused_during.values()) == {False}
    assert [b.attn.fused_attn for b in r["model"].blocks] == r["fused_before"]
    assert no_hooks_left(r["model"])


# --------------------------------------------------------------------------- register tokens, no [CLS]
def test_register_token_model_layout_and_trace():
    assert "vit_small_patch14_reg4_dinov2" in timm.list_models("*reg4*")
    torch.manual_seed(0)
    model = timm.create_model("vit_small_patch14_reg4_dinov2", pretrained=False, img_size=56).eval()
    layout = vit_layout(model)
    assert layout == ViTLayout(num_blocks=12, num_prefix_tokens=5, has_cls=True,
                               num_patches=16, width=384)
    image = torch.randn(1, 3, 56, 56, generator=torch.Generator().manual_seed(2))
    rec = Recorder()
    with torch.inference_mode():
        untraced = model(image)
        with trace(model, [rec]):
            traced = model(image)
        assert_close_to_scale(traced, untraced)
        assert rec.order == layout.layer_names
        assert rec.tokens["raw"].shape == (1, 16, 384)
        for layer in layout.layer_names[1:]:
            assert rec.tokens[layer].shape == (1, 21, 384)
        for a in rec.attention.values():
            assert a.shape == (1, 21, 21)
            torch.testing.assert_close(a.sum(-1), torch.ones(1, 21), rtol=0, atol=1e-5)
        # prefix layout: [CLS], 4 registers, then patches (PE added to patches only here)
        assert model.no_embed_class
        assert_close_to_scale(rec.tokens["pe"][0, 0], model.cls_token[0, 0])
        assert_close_to_scale(rec.tokens["pe"][0, 1:5], model.reg_token[0])
        assert_close_to_scale(rec.tokens["pe"][:, 5:], rec.tokens["raw"] + model.pos_embed)
        assert torch.equal(patch_positional_embedding(model), model.pos_embed[0])


def test_model_without_cls_layout_and_trace():
    torch.manual_seed(0)
    model = timm.create_model("vit_small_patch16_224", pretrained=False,
                              class_token=False, global_pool="avg").eval()
    layout = vit_layout(model)
    assert layout == ViTLayout(num_blocks=12, num_prefix_tokens=0, has_cls=False,
                               num_patches=196, width=384)
    assert layout.cls_index is None
    image = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    rec = Recorder()
    with torch.inference_mode():
        untraced = model(image)
        with trace(model, [rec]):
            traced = model(image)
    assert_close_to_scale(traced, untraced)
    for layer in layout.layer_names:
        assert rec.tokens[layer].shape == (1, 196, 384)
    assert rec.attention[12].shape == (1, 196, 196)
    assert patch_positional_embedding(model).shape == (196, 384)


# --------------------------------------------------------------------------- mini ViT: hooks, flags, errors
MINI = MiniViTConfig("capture-test", depth=2, width=16, heads=2, num_classes=4)


@pytest.fixture
def mini():
    torch.manual_seed(0)
    return build_mini_vit(MINI).eval()


@pytest.fixture
def mini_images():
    return torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(4))


def test_mini_vit_layout_and_positional_embedding(mini):
    layout = vit_layout(mini)
    assert layout == ViTLayout(num_blocks=2, num_prefix_tokens=1, has_cls=True, num_patches=49, width=16)
    assert torch.equal(patch_positional_embedding(mini), mini.pos_embed[0, 1:])


def test_fused_flags_restored_after_an_error_in_the_forward(mini, mini_images):
    mini.blocks[0].attn.fused_attn = True
    mini.blocks[1].attn.fused_attn = False  # mixed on purpose: restore, not "set all to True"

    class Exploding(Recorder):
        calls = 0

        def on_attention(self, block, attention):
            Exploding.calls += 1
            if block == 2:
                raise RuntimeError("boom")

    sink = Exploding()
    with pytest.raises(RuntimeError, match="boom"):
        with torch.no_grad(), trace(mini, [sink]):
            assert [b.attn.fused_attn for b in mini.blocks] == [False, False]
            mini(mini_images)
    assert [b.attn.fused_attn for b in mini.blocks] == [True, False]
    assert no_hooks_left(mini)
    calls = Exploding.calls
    with torch.no_grad():
        mini(mini_images)  # the hooks are gone: the sink is not called again
    assert Exploding.calls == calls == 2


def test_error_in_the_with_body_restores_too(mini):
    with pytest.raises(KeyError):
        with trace(mini, [Recorder()]):
            raise KeyError("x")
    assert all(b.attn.fused_attn for b in mini.blocks)
    assert no_hooks_left(mini)


def test_unfused_attention_restores_each_blocks_own_flag(mini, mini_images):
    mini.blocks[0].attn.fused_attn = False
    mini.blocks[1].attn.fused_attn = True
    with torch.no_grad():
        expected = mini(mini_images)
    with pytest.raises(ValueError, match="inside"):
        with unfused_attention(mini):
            assert [b.attn.fused_attn for b in mini.blocks] == [False, False]
            with torch.no_grad():
                assert torch.allclose(mini(mini_images), expected, atol=1e-6)
            raise ValueError("inside")
    assert [b.attn.fused_attn for b in mini.blocks] == [False, True]


def test_trace_without_attention_leaves_fusion_alone(mini, mini_images):
    rec = Recorder(mini)
    with torch.no_grad(), trace(mini, [rec], attention=False):
        assert all(b.attn.fused_attn for b in mini.blocks)
        mini(mini_images)
    assert rec.attention == {}
    assert rec.order == ["raw", "pe", "1", "2", "head"]


def test_several_sinks_and_several_batches(mini, mini_images):
    a, b = Recorder(), Recorder()
    with torch.no_grad(), trace(mini, [a, b]):
        mini(mini_images[:1])
        mini(mini_images[1:])
    assert a.order == b.order == ["raw", "pe", "1", "2", "head"] * 2
    assert a.tokens["head"].shape == (2, 50, 16)  # the last batch


@pytest.mark.parametrize("device, heads, tokens, batch, threads, expected", [
    ("cpu", 6, 50, 250, 2, 34),       # mini-B: 60 000 bytes of weights per image in 2 x 1 MiB
    ("cpu", 12, 197, 8, 2, 1),        # ViT-B/16: 1.9 MB per image, never fewer than one image
    ("cpu", 12, 197, 256, 64, 36),    # a many-core CPU gets larger chunks: 64 MiB
    ("cpu", 1, 4, 10, 2, 10),         # everything fits: the whole batch, no more
    ("cuda", 12, 197, 256, 2, 256),   # GPUs take the whole batch
])
def test_images_per_attention_chunk(device, heads, tokens, batch, threads, expected):
    assert images_per_attention_chunk(torch.device(device), heads, tokens, batch,
                                      threads) == expected


def chunks_of(images: int, monkeypatch) -> None:
    """Sets the CPU budget so that the mini ViT's attention runs ``images`` images at a time."""
    per_image = MINI.heads * 50 * 50 * 4
    threads = torch.get_num_threads()
    monkeypatch.setattr(capture, "CPU_ATTENTION_BYTES_PER_THREAD",
                        images * per_image // threads + 1)
    assert images_per_attention_chunk(torch.device("cpu"), MINI.heads, 50, 100) == images


def test_attention_in_chunks_equals_the_whole_batch(mini, monkeypatch):
    """With a budget of three images' weights, a batch of 8 runs as 3 + 3 + 2 images; the sinks
    still get one (8, T, T) attention per block, equal to the whole batch's, and the logits the
    untraced model's."""
    images = torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(5))
    chunks_of(3, monkeypatch)
    seen: list[int] = []  # the images of each piece timm's unfused attention runs on
    rec = Recorder(mini)
    with torch.no_grad():
        untraced = mini(images)
        hook = mini.blocks[0].attn.attn_drop.register_forward_hook(
            lambda module, args, weights: seen.append(weights.shape[0]))
        with trace(mini, [rec]):
            traced = mini(images)
    hook.remove()
    assert seen == [3, 3, 2]
    assert_close_to_scale(traced, untraced, rel=1e-6)
    inputs = rec.tokens["pe"]
    for block in (1, 2):
        assert rec.attention[block].shape == (8, 50, 50)
        with torch.no_grad():
            expected = manual_attention(mini.blocks[block - 1],
                                        inputs if block == 1 else rec.tokens["1"])
        assert_close_to_scale(rec.attention[block], expected, rel=1e-6)


def test_an_attention_mask_keeps_the_batch_in_one_piece(mini, monkeypatch):
    """A mask may hold one row per image, which a split would misalign: such calls run whole."""
    chunks_of(1, monkeypatch)
    x = torch.randn(4, 50, MINI.width, generator=torch.Generator().manual_seed(6))
    mask = torch.zeros(4, 1, 50, 50)
    mask[1:, ..., 25:] = -math.inf  # images 2-4 may not attend to the last 25 tokens
    rec = Recorder()
    attn = mini.blocks[0].attn
    with torch.no_grad():
        expected = attn(x, attn_mask=mask)  # fused
        with trace(mini, [rec]):
            masked = attn(x, attn_mask=mask)
            masked_attention = rec.attention[1]
            pieces = attn(x)  # no mask: four pieces, the same numbers as one
        whole = attn(x)
    assert_close_to_scale(masked, expected, rel=1e-6)
    assert masked_attention.shape == (4, 50, 50)
    assert masked_attention[0, :, 25:].sum() > 0
    assert torch.equal(masked_attention[1:, :, 25:], torch.zeros(3, 50, 25))
    assert_close_to_scale(pieces, whole, rel=1e-6)
    assert no_hooks_left(mini)


def _traced_block_attention(mini, x, **kwargs):
    """Block 1's attention on ``x`` with ``kwargs``, fused and traced: the images per unfused
    call, the traced output, the fused output and the recorded attention."""
    attn = mini.blocks[0].attn
    seen: list[int] = []
    rec = Recorder()
    with torch.no_grad():
        expected = attn(x, **kwargs)  # fused
        with trace(mini, [rec]):
            hook = attn.attn_drop.register_forward_hook(
                lambda module, args, weights: seen.append(weights.shape[0]))
            out = attn(x, **kwargs)
            hook.remove()
    return seen, out, expected, rec


def test_a_mask_shared_by_every_image_still_runs_in_chunks(mini, monkeypatch):
    """A (T, T) mask broadcasts over the images: each chunk gets all of it."""
    chunks_of(2, monkeypatch)
    x = torch.randn(5, 50, MINI.width, generator=torch.Generator().manual_seed(8))
    mask = torch.zeros(50, 50)
    mask[:, 25:] = -math.inf
    seen, out, expected, rec = _traced_block_attention(mini, x, attn_mask=mask)
    assert seen == [2, 2, 1]
    assert_close_to_scale(out, expected, rel=1e-6)
    assert torch.equal(rec.attention[1][..., 25:], torch.zeros(5, 50, 25))


def test_is_causal_still_runs_in_chunks(mini, monkeypatch):
    """``is_causal`` is a flag, not a per-image mask: the batch is still split."""
    chunks_of(2, monkeypatch)
    x = torch.randn(5, 50, MINI.width, generator=torch.Generator().manual_seed(7))
    seen, out, expected, rec = _traced_block_attention(mini, x, is_causal=True)
    assert seen == [2, 2, 1]
    assert_close_to_scale(out, expected, rel=1e-6)
    assert torch.equal(rec.attention[1].triu(diagonal=1), torch.zeros(5, 50, 50))


def test_a_trace_within_a_trace_gives_every_sink_the_whole_batch(mini, mini_images, monkeypatch):
    chunks_of(1, monkeypatch)
    outer, inner = Recorder(), Recorder()
    with torch.no_grad(), trace(mini, [outer]):
        with trace(mini, [inner]):
            mini(mini_images)
            both = outer.attention[2], inner.attention[2]
        mini(mini_images[:2])  # the inner trace is over: only the outer sink is fed
    assert both[0].shape == both[1].shape == (3, 50, 50)
    assert torch.equal(both[0], both[1])
    assert outer.attention[2].shape == (2, 50, 50) and inner.attention[2].shape == (3, 50, 50)
    assert outer.order == ["raw", "pe", "1", "2", "head"] * 2
    assert no_hooks_left(mini)


def test_attention_that_skips_attn_drop_is_a_clear_error(mini, mini_images):
    """A module that computes its weights without passing them through attn_drop (here: the
    fused kernel switched back on inside the trace) cannot be traced."""
    with torch.no_grad(), trace(mini, [Recorder()]):
        mini.blocks[0].attn.fused_attn = True
        with pytest.raises(UnsupportedModelError, match="block 1.*attn_drop 0 times in 1"):
            mini(mini_images)
    assert no_hooks_left(mini)


def test_sinks_run_in_full_precision_under_bf16_autocast(mini, mini_images):
    """Under the model's bf16 autocast a sink's own products must stay float32 (a moment
    x^T x computed in bf16 loses the covariance to cancellation), while the model itself runs
    in bf16 (the tokens arrive as bf16)."""

    class ProductDtypes(Recorder):
        def __init__(self):
            super().__init__()
            self.token_products, self.attention_products, self.token_dtypes = {}, {}, {}

        def on_tokens(self, layer, tokens):
            x = tokens.float().reshape(-1, tokens.shape[-1])
            self.token_products[layer] = (x.T @ x).dtype
            self.token_dtypes[layer] = tokens.dtype

        def on_attention(self, block, attention):
            self.attention_products[block] = (attention @ attention).dtype

    sink = ProductDtypes()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16), trace(mini, [sink]):
        mini(mini_images)
        inside = torch.randn(4, 4) @ torch.randn(4, 4)
    assert inside.dtype == torch.bfloat16  # autocast was on around the model
    assert torch.bfloat16 in sink.token_dtypes.values()
    assert set(sink.token_products.values()) == {torch.float32}
    assert set(sink.attention_products.values()) == {torch.float32}
    assert len(sink.token_products) == 5 and len(sink.attention_products) == 2


def test_non_vit_raises_unsupported_model_error():
    resnet = timm.create_model("resnet18", pretrained=False)
    with pytest.raises(UnsupportedModelError, match="not a timm VisionTransformer") as error:
        check_vit(resnet)
    for supported in ("VisionTransformer", "Eva", "Beit", "VisionTransformerRelPos"):
        assert supported in str(error.value)  # the message lists what is supported
    with pytest.raises(UnsupportedModelError):
        vit_layout(resnet)
    with pytest.raises(UnsupportedModelError):
        with trace(resnet, [Recorder()]):
            pass
    assert no_hooks_left(resnet)


def test_vit_without_timm_attention_raises(mini):
    mini.blocks[1].attn = torch.nn.Identity()
    with pytest.raises(UnsupportedModelError, match="block 1"):
        vit_layout(mini)


# --------------------------------------------------------------------------- PE scaling
def test_alpha_zero_removes_the_positional_encoding(mini, mini_images):
    original = mini.pos_embed.detach().clone()
    rec = Recorder()
    with torch.no_grad(), scaled_positional_encoding(mini, 0), trace(mini, [rec], attention=False):
        mini(mini_images)
    assert torch.equal(rec.tokens["pe"][:, 1:], rec.tokens["raw"])
    assert torch.equal(rec.tokens["pe"][:, 0], mini.cls_token[0, 0].expand(3, 16))
    assert torch.equal(mini.pos_embed, original)


@pytest.mark.parametrize("alpha", [0.25, 2, 1.5])
def test_alpha_scales_the_positional_encoding(mini, mini_images, alpha):
    original = mini.pos_embed.detach().clone()
    rec = Recorder()
    with torch.no_grad():
        reference = mini(mini_images)
        with scaled_positional_encoding(mini, alpha), trace(mini, [rec], attention=False):
            scaled = mini(mini_images)
        after = mini(mini_images)
    torch.testing.assert_close(rec.tokens["pe"][:, 1:] - rec.tokens["raw"],
                               (alpha * original[0, 1:]).expand(3, 49, 16), rtol=0, atol=1e-6)
    assert not torch.allclose(scaled, reference)  # the intervention changes the output
    assert torch.equal(after, reference)         # ... and is undone on exit
    assert torch.equal(mini.pos_embed, original)


def test_alpha_one_changes_nothing(mini, mini_images):
    with torch.no_grad():
        reference = mini(mini_images)
        with scaled_positional_encoding(mini, 1.0):
            same = mini(mini_images)
    assert torch.equal(same, reference)


def test_positional_encoding_restored_after_an_error(mini):
    original = mini.pos_embed.detach().clone()
    with pytest.raises(ValueError):
        with scaled_positional_encoding(mini, 0.0):
            assert torch.equal(mini.pos_embed, torch.zeros_like(original))
            raise ValueError("inside")
    assert torch.equal(mini.pos_embed, original)


@pytest.mark.parametrize("alpha", ["0.5", None, True, [1.0]])
def test_wrong_alpha_type_raises(mini, alpha):
    original = mini.pos_embed.detach().clone()
    with pytest.raises(TypeError, match="alpha"):
        with scaled_positional_encoding(mini, alpha):
            pass
    assert torch.equal(mini.pos_embed, original)


def test_scaling_a_model_without_positional_embedding_raises():
    model = VisionTransformer(img_size=28, patch_size=4, in_chans=1, num_classes=4, embed_dim=16,
                              depth=1, num_heads=2, pos_embed="none")
    assert model.pos_embed is None
    assert vit_layout(model).pe_note == "no position embedding"
    with pytest.raises(UnsupportedModelError, match="positional embedding.*no position embedding"):
        with scaled_positional_encoding(model, 0.5):
            pass
