"""The mini ViT builder and the variant zoo's architectural changes (vitphase_lib.models)."""
from __future__ import annotations

import math
from dataclasses import fields

import pytest
import torch

from vitphase_lib.capture import trace
from vitphase_lib.models import (MINI_ZOO, TINY_ZOO, VARIANTS, HubAttention, MiniViTConfig,
                                 build_mini_vit, count_parameters)
from vitphase_lib.zoo import ZOO_TRAINING

SMALL = MiniViTConfig("small", depth=4, width=16, heads=2)
BASE_CONFIGS = {**MINI_ZOO, **TINY_ZOO}


class AttentionRecorder:
    def __init__(self):
        self.attention = {}

    def on_tokens(self, layer, tokens):
        pass

    def on_attention(self, block, attention):
        self.attention[block] = attention.clone()


def _traced_attention(model, images):
    recorder = AttentionRecorder()
    with torch.no_grad(), trace(model, [recorder]):
        logits = model(images)
    return logits, recorder.attention


def _build(**changes) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_mini_vit(MiniViTConfig("small", depth=4, width=16, heads=2, **changes)).eval()


@pytest.mark.parametrize("changes", [{}, {"hub": "removed", "hub_blocks": 2},
                                     {"hub": "forced", "hub_blocks": 2}, {"class_token": False},
                                     {"pos_embed": "sincos", "pe_scale": 0.5}, {"shared_mlp": True}])
def test_fused_unfused_and_traced_forward_agree(changes):
    model = _build(**changes)
    images = torch.randn(5, 1, 28, 28)
    with torch.no_grad():
        fused = model(images)
        for block in model.blocks:
            block.attn.fused_attn = False
        unfused = model(images)
        for block in model.blocks:
            block.attn.fused_attn = True
    traced, attention = _traced_attention(model, images)
    torch.testing.assert_close(unfused, fused, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(traced, fused, atol=1e-5, rtol=1e-5)
    assert sorted(attention) == [1, 2, 3, 4]


def test_hub_removed_blocks_give_cls_nothing():
    model = _build(hub="removed", hub_blocks=2)
    _, attention = _traced_attention(model, torch.randn(6, 1, 28, 28))
    for block in (1, 2):
        assert attention[block][:, 1:, 0].min() > 0
    for block in (3, 4):
        assert torch.all(attention[block][:, 1:, 0] == 0)
        assert attention[block][:, 0, 0].min() > 0  # [CLS] itself still reads everything
        torch.testing.assert_close(attention[block].sum(-1), torch.ones(6, 50))
    assert all(isinstance(b.attn, HubAttention) for b in model.blocks[2:])
    assert not any(isinstance(b.attn, HubAttention) for b in model.blocks[:2])


def test_hub_forced_blocks_keep_cls_centrality_at_five_times_uniform():
    model = _build(hub="forced", hub_blocks=2)
    _, attention = _traced_attention(model, torch.randn(6, 1, 28, 28))
    tokens = 50  # 49 patches + [CLS]
    for block in (3, 4):
        centrality = attention[block][:, 1:, 0].mean(dim=1)
        assert centrality.min() >= HubAttention.FORCED_MULTIPLE / tokens - 1e-6
        torch.testing.assert_close(attention[block].sum(-1), torch.ones(6, tokens))
    assert attention[1][:, 1:, 0].mean() < HubAttention.FORCED_MULTIPLE / tokens


def test_hub_attention_trains_through_both_paths():
    model = _build(hub="forced", hub_blocks=2).train()
    loss = model(torch.randn(4, 1, 28, 28)).logsumexp(-1).mean()
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all()
               for p in model.parameters() if p.requires_grad)


def test_sincos_position_embedding_is_scaled_and_frozen():
    strong, weak = _build(pos_embed="sincos", pe_scale=2.0), _build(pos_embed="sincos", pe_scale=0.5)
    assert not strong.pos_embed.requires_grad
    assert torch.all(strong.pos_embed[0, 0] == 0)  # the [CLS] position gets no embedding
    torch.testing.assert_close(strong.pos_embed, 4 * weak.pos_embed)
    # each position of the 2-D sin-cos table has norm sqrt(D / 2)
    norms = strong.pos_embed[0, 1:].norm(dim=-1)
    torch.testing.assert_close(norms, torch.full_like(norms, 2.0 * math.sqrt(16 / 2)))
    none = _build(pos_embed="sincos", pe_scale=0.0)
    assert torch.all(none.pos_embed == 0)


def test_average_pooling_has_no_cls_token():
    model = _build(class_token=False)
    assert model.cls_token is None and model.num_prefix_tokens == 0 and model.global_pool == "avg"


def test_shared_mlp_pairs_blocks_and_scales_their_initial_weights():
    torch.manual_seed(0)
    plain = build_mini_vit(SMALL)
    shared = _build(shared_mlp=True)
    assert shared.blocks[0].mlp is shared.blocks[1].mlp and shared.blocks[2].mlp is shared.blocks[3].mlp
    assert shared.blocks[1].mlp is not shared.blocks[2].mlp
    torch.testing.assert_close(shared.blocks[0].mlp.fc1.weight, plain.blocks[0].mlp.fc1.weight / math.sqrt(2))
    mlp_params = sum(p.numel() for p in plain.blocks[0].mlp.parameters())
    assert count_parameters(plain) - count_parameters(shared) == 2 * mlp_params
    odd = build_mini_vit(MiniViTConfig("odd", depth=3, width=16, heads=2, shared_mlp=True))
    assert odd.blocks[0].mlp is odd.blocks[1].mlp and odd.blocks[2].mlp is not odd.blocks[1].mlp


def test_to_dict_leaves_out_variant_fields_at_their_defaults():
    assert set(SMALL.to_dict()) == {"name", "depth", "width", "heads", "mlp_ratio", "patch_size",
                                    "img_size", "in_chans", "num_classes", "drop_path_rate"}
    changed = MiniViTConfig("x", depth=2, width=16, heads=2, hub="removed", hub_blocks=1)
    assert changed.to_dict()["hub"] == "removed" and changed.to_dict()["hub_blocks"] == 1
    assert MiniViTConfig(**changed.to_dict()) == changed


@pytest.mark.parametrize("bad, match", [
    ({"pos_embed": "rope"}, "pos_embed"), ({"hub": "gone"}, "hub"),
    ({"hub": "removed"}, "hub_blocks"), ({"hub": "forced", "hub_blocks": 2, "class_token": False}, "CLS"),
])
def test_invalid_variant_fields_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        MiniViTConfig("x", depth=2, width=16, heads=2, **bad)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_variant_differs_from_its_base_by_its_one_change(name):
    variant = VARIANTS[name]
    base = BASE_CONFIGS[variant.base]
    changed = {f.name for f in fields(MiniViTConfig)
               if getattr(variant.config, f.name) != getattr(base, f.name)} - {"name"}
    expected = {"depth": {"depth"}, "pooling": {"class_token"}, "pe": {"pos_embed", "pe_scale"},
                "hub": {"hub", "hub_blocks"}, "seed": set(), "mlp": {"mlp_ratio", "shared_mlp"}}
    assert changed and changed <= expected[variant.group] or (variant.group == "seed" and not changed)
    recipe, base_recipe = ZOO_TRAINING[name], ZOO_TRAINING[variant.base]
    differs = {f.name for f in fields(recipe) if getattr(recipe, f.name) != getattr(base_recipe, f.name)}
    assert differs - {"snapshot_fractions", "threads"} == ({"seed"} if variant.group == "seed" else set())
    assert recipe.snapshot_fractions == (0.25, 1.0)


def test_variant_groups_of_the_mini_zoo():
    mini = [v for v in VARIANTS.values() if not v.name.startswith("tiny")]
    groups = {}
    for variant in mini:
        groups.setdefault(variant.group, []).append(variant.name)
    assert sorted(groups["depth"]) == ["mini-s-d18", "mini-s-d24", "mini-s-d3", "mini-s-d6"]
    assert sorted(groups["pooling"]) == ["mini-b-avg", "mini-s-avg"]
    assert len(groups["pe"]) == 4 and "mini-s-pe-none" in groups["pe"]
    assert sorted(groups["hub"]) == ["mini-s-hub-forced", "mini-s-hub-removed"]
    assert VARIANTS["mini-s-hub-removed"].config.hub_blocks == 4  # the last third of 12 blocks
    assert sorted(groups["seed"]) == ["mini-s-seed1", "mini-s-seed2"]
    assert sorted(groups["mlp"]) == ["mini-s-mlp-half", "mini-s-mlp-shared"]
