"""Model construction: the project's mini zoo (timm ``VisionTransformer`` shaped like ViT-S/B/L)
and real timm ViTs by name, with the checks the analyses rely on."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

import torch
import torch.nn.functional as F
from timm.layers import Attention
from timm.layers.pos_embed_sincos import build_sincos2d_pos_embed
from timm.models.vision_transformer import VisionTransformer

from .errors import VitphaseError


class UnsupportedModelError(VitphaseError, ValueError):
    """The capture engine cannot trace the model (not one of the timm ViT classes it supports), or
    an analysis does not apply to it (PE scaling of a model without additive position embedding)."""


@dataclass(frozen=True)
class MiniViTConfig:
    """A small ViT for 28 x 28 single-channel images (Fashion-MNIST)."""

    name: str
    depth: int
    width: int
    heads: int
    mlp_ratio: float = 4.0
    patch_size: int = 4
    img_size: int = 28
    in_chans: int = 1
    num_classes: int = 10
    drop_path_rate: float = 0.0
    # what the variant zoo changes (vitphase_lib/variants.py); the defaults are the mini zoo's
    class_token: bool = True     # False: no [CLS]; the head reads the mean patch token
    pos_embed: str = "learned"   # "learned", or "sincos": fixed 2-D sin-cos x pe_scale, not trained
    pe_scale: float = 1.0        # the sin-cos embedding's factor (0: no position information)
    hub: str = "free"            # "removed" / "forced": see HubAttention; in the last hub_blocks blocks
    hub_blocks: int = 0
    shared_mlp: bool = False     # adjacent blocks (1-2, 3-4, ...) share one MLP

    def __post_init__(self):
        if self.pos_embed not in ("learned", "sincos"):
            raise ValueError(f"pos_embed must be 'learned' or 'sincos', got {self.pos_embed!r}")
        if self.hub not in ("free", "removed", "forced"):
            raise ValueError(f"hub must be 'free', 'removed' or 'forced', got {self.hub!r}")
        if self.hub != "free" and not (self.class_token and 0 < self.hub_blocks <= self.depth):
            raise ValueError(f"a hub intervention needs a [CLS] token and 1..{self.depth} hub_blocks")

    @property
    def head_dim(self) -> int:
        return self.width // self.heads

    def to_dict(self) -> dict:
        """The fields, leaving out the variant fields still at their defaults: the shipped mini
        and tiny zoos' manifests (written before those fields existed) describe their models."""
        values = asdict(self)
        return {f.name: values[f.name] for f in fields(self)
                if f.name not in _VARIANT_FIELDS or values[f.name] != f.default}


_VARIANT_FIELDS = ("class_token", "pos_embed", "pe_scale", "hub", "hub_blocks", "shared_mlp")


# The mini zoo. ViT-S/16, B/16, L/16 have widths 384 / 768 / 1024, depths 12 / 12 / 24, heads
# 6 / 12 / 16 (head dimension 64). The mini zoo keeps every ratio: B is twice S's width, L is 4/3
# of B's width and twice its depth, and the head dimension is constant (12). The base width 36 is
# chosen for the 4-hour CPU budget (README, "Mini zoo"): with 48 (head dimension 16) mini-L
# trained at 70 images/s, so the budget allowed it 8 epochs and it stopped at 87.1-87.9% test
# top-1, below the 88% target; at width 96 it trains about 40% faster and gets 11 epochs.
MINI_ZOO: dict[str, MiniViTConfig] = {
    "mini-s": MiniViTConfig("mini-s", depth=12, width=36, heads=3),
    "mini-b": MiniViTConfig("mini-b", depth=12, width=72, heads=6),
    "mini-l": MiniViTConfig("mini-l", depth=24, width=96, heads=8),
}

# The smoke profile's zoo: same shapes in miniature, trained in seconds, shipped in zoo/tiny/.
TINY_ZOO: dict[str, MiniViTConfig] = {
    "tiny-s": MiniViTConfig("tiny-s", depth=3, width=16, heads=2),
    "tiny-b": MiniViTConfig("tiny-b", depth=3, width=32, heads=4),
    "tiny-l": MiniViTConfig("tiny-l", depth=6, width=48, heads=6),
}



@dataclass(frozen=True)
class Variant:
    """A model of the variant zoo: its base zoo model and the one change that sets it apart.

    ``recipe`` overrides fields of the base's training recipe (``zoo.ZOO_TRAINING``), e.g. the
    seed; everything else (data, recipe, seed) is the base's."""

    name: str
    group: str    # the experiment: depth, pooling, pe, hub, seed, mlp
    base: str
    change: str   # the change, in words
    config: MiniViTConfig
    recipe: tuple[tuple[str, object], ...] = ()


# mini-S's learned PE has mean norm 1.41 per position (0.60 of its patch embeddings' norm); the
# 2-D sin-cos table at width 36 has norm sqrt(36 / 2) = 4.24, so a scale of 0.33 matches mini-S's
# strength, and 0.08 and 1.33 are a quarter and four times it.
PE_SCALES = {"none": 0.0, "weak": 0.08, "matched": 0.33, "strong": 1.33}


def late_block_count(depth: int) -> int:
    """How many of the last blocks the hub variants intervene in: a third of them, and at least
    two (an intervention on the patches' attention in the last block alone cannot reach the
    readout: only [CLS]'s own attention row does)."""
    return min(depth, max(2, depth // 3))


def _variants(base: MiniViTConfig, depths: tuple[int, ...], big: MiniViTConfig) -> list[Variant]:
    """The variant zoo of one scale: changes of ``base`` (and one of ``big``, for pooling)."""
    def variant(suffix: str, group: str, change: str, of: MiniViTConfig = base, recipe=(), **fields):
        name = f"{of.name}-{suffix}"
        return Variant(name, group, of.name, change, replace(of, name=name, **fields), tuple(recipe))

    hub_blocks = late_block_count(base.depth)
    last = (f"block {base.depth}" if hub_blocks == 1 else
            f"blocks {base.depth - hub_blocks + 1}-{base.depth}")
    return [
        *(variant(f"d{depth}", "depth", f"depth {depth} (base {base.depth})", depth=depth)
          for depth in depths),
        *(variant("avg", "pooling", "no [CLS]: the head reads the mean patch token", of=of,
                  class_token=False) for of in (base, big)),
        *(variant(f"pe-{strength}", "pe",
                  "no position embedding" if scale == 0 else
                  f"fixed 2-D sin-cos position embedding x {scale:g} ({strength})",
                  pos_embed="sincos", pe_scale=scale)
          for strength, scale in PE_SCALES.items()),
        variant("hub-removed", "hub", f"patches cannot attend to [CLS] in {last}",
                hub="removed", hub_blocks=hub_blocks),
        variant("hub-forced", "hub", f"patches give [CLS] at least 5x the uniform share in {last}",
                hub="forced", hub_blocks=hub_blocks),
        *(variant(f"seed{seed}", "seed", f"training seed {seed} (base 0)", recipe=[("seed", seed)])
          for seed in (1, 2)),
        variant("mlp-half", "mlp", "MLP hidden width halved (mlp_ratio 2)", mlp_ratio=base.mlp_ratio / 2),
        variant("mlp-shared", "mlp", "adjacent blocks share one MLP", shared_mlp=True),
    ]


# The variant zoo (default profile) and its tiny twin (smoke profile, tests).
VARIANTS: dict[str, Variant] = {
    v.name: v for v in (*_variants(MINI_ZOO["mini-s"], (3, 6, 18, 24), MINI_ZOO["mini-b"]),
                        *_variants(TINY_ZOO["tiny-s"], (1, 2, 4, 6), TINY_ZOO["tiny-b"]))}
VARIANT_GROUPS = tuple(dict.fromkeys(v.group for v in VARIANTS.values()))

ALL_MINI_CONFIGS = {**MINI_ZOO, **TINY_ZOO, **{name: v.config for name, v in VARIANTS.items()}}


def build_mini_vit(config: MiniViTConfig) -> VisionTransformer:
    """A timm ``VisionTransformer``: by default with a [CLS] token and learned positional
    embeddings; a variant's changes (class_token, pos_embed, hub, shared_mlp) applied on top."""
    model = VisionTransformer(
        img_size=config.img_size, patch_size=config.patch_size, in_chans=config.in_chans,
        num_classes=config.num_classes, embed_dim=config.width, depth=config.depth,
        num_heads=config.heads, mlp_ratio=config.mlp_ratio, class_token=config.class_token,
        global_pool="token" if config.class_token else "avg", drop_path_rate=config.drop_path_rate,
    )
    if config.pos_embed == "sincos":
        _fix_sincos_position_embedding(model, config.pe_scale)
    for block in model.blocks[config.depth - config.hub_blocks:] if config.hub != "free" else ():
        block.attn = HubAttention.from_attention(block.attn, config.hub, model.num_prefix_tokens)
    if config.shared_mlp:
        _share_mlps(model)
    return model


def _fix_sincos_position_embedding(model: VisionTransformer, scale: float) -> None:
    """pos_embed becomes scale x the 2-D sin-cos embedding of the patch grid (zero for [CLS]) and
    is frozen: training cannot rescale it, so ``scale`` sets the PE's strength."""
    grid = list(model.patch_embed.grid_size)
    table = build_sincos2d_pos_embed(grid, dim=model.embed_dim)  # (H * W, D), each entry in [-1, 1]
    with torch.no_grad():
        model.pos_embed.zero_()
        model.pos_embed[0, model.num_prefix_tokens:] = scale * table
    model.pos_embed.requires_grad_(False)


def _share_mlps(model: VisionTransformer) -> None:
    """Blocks 1-2, 3-4, ... share the first block's MLP (an odd last block keeps its own). The
    shared weights receive two gradients, so they start at 1/sqrt(2) of timm's initial scale."""
    blocks = model.blocks
    for first in range(0, len(blocks) - 1, 2):
        mlp = blocks[first].mlp
        with torch.no_grad():
            for layer in (mlp.fc1, mlp.fc2):
                layer.weight.mul_(1 / math.sqrt(2))
        blocks[first + 1].mlp = mlp


class HubAttention(Attention):
    """timm's ``Attention`` with the [CLS] hub intervened on, for the patch queries only:

    - ``removed``: patches cannot attend to [CLS] (its score is -inf);
    - ``forced``: each patch's attention becomes (1 - s) softmax + s at [CLS], with s five times
      the uniform share 1 / T, so CLS centrality is at least 5 / T.

    The weights used are the ones that pass ``attn_drop`` on the unfused path (where the capture
    reads them); the fused path computes the same output.
    """

    FORCED_MULTIPLE = 5.0

    @classmethod
    def from_attention(cls, attn: Attention, mode: str, num_prefix_tokens: int) -> "HubAttention":
        hub = cls.__new__(cls)
        hub.__dict__.update(attn.__dict__)  # the same submodules and parameters, another forward
        hub.mode, hub.num_prefix_tokens = mode, num_prefix_tokens
        return hub

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None,
                is_causal: bool = False) -> torch.Tensor:
        if attn_mask is not None or is_causal:
            raise ValueError("HubAttention sets its own mask; it takes no attn_mask")
        B, N, C = x.shape
        gate = self.gate(x).sigmoid() if getattr(self, "gate", None) is not None else None
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        prefix = self.num_prefix_tokens
        bias = None
        if self.mode == "removed":
            bias = x.new_zeros(N, N)
            bias[prefix:, 0] = float("-inf")
        share = self.FORCED_MULTIPLE / N
        if self.fused_attn:
            x = F.scaled_dot_product_attention(q, k, v, attn_mask=bias,
                                               dropout_p=self.attn_drop.p if self.training else 0.)
            if self.mode == "forced":
                x = torch.cat([x[:, :, :prefix],
                               (1 - share) * x[:, :, prefix:] + share * v[:, :, :1]], dim=2)
        else:
            attn = (q * self.scale) @ k.transpose(-2, -1)
            if bias is not None:
                attn = attn + bias
            attn = attn.softmax(dim=-1)
            if self.mode == "forced":
                cls_column = F.one_hot(torch.zeros((), dtype=torch.long, device=x.device), N).to(attn.dtype)
                patches = (1 - share) * attn[:, :, prefix:] + share * cls_column
                attn = torch.cat([attn[:, :, :prefix], patches], dim=2)
            attn = self.attn_drop(attn)
            x = attn @ v
        x = self.norm(x.transpose(1, 2).reshape(B, N, self.attn_dim))
        if gate is not None:
            x = x * gate
        return self.proj_drop(self.proj(x))


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def check_vit(model: torch.nn.Module) -> torch.nn.Module:
    """Return ``model`` if the capture engine can trace it: an instance of one of the timm classes
    of ``capture.FAMILIES`` (or of a subclass). Else raise an error listing those classes."""
    from .capture import FAMILIES  # here, not at the top: capture imports this module

    if not isinstance(model, tuple(family.model_class for family in FAMILIES)):
        supported = "; ".join(f"{family.model_class.__name__} ({family.examples})"
                              for family in FAMILIES)
        raise UnsupportedModelError(
            f"{type(model).__name__} is not a timm VisionTransformer nor another ViT class that "
            f"vitphase traces. Supported classes (and their subclasses): {supported}. Pick one, "
            "e.g. 'vit_base_patch16_224.augreg2_in21k_ft_in1k'.")
    return model
