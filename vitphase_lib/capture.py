"""One forward pass of a timm ViT, every layer's tokens and every block's attention.

:func:`trace` registers forward hooks on a timm ViT and hands each layer's tokens and each
block's head-averaged attention to a list of *sinks* (the streaming metric accumulators of
:mod:`vitphase_lib.metrics`) the moment the model produces them. Nothing is kept after a sink has
read it, so memory does not grow with the number of images, and at most one block's attention map
exists at a time beside the model's own activations.

Four timm classes (and their subclasses) are traced, each described by one :class:`Family` in
:data:`FAMILIES`: ``VisionTransformer`` (ViT, DeiT, register and global-pool variants), ``Eva``
(EVA-02, the RoPE ViTs, DINOv3), ``Beit`` (BEiT, BEiT v2) and ``VisionTransformerRelPos``. Any
other model is refused with that list (:func:`vitphase_lib.models.check_vit`).

Layers, in order (:mod:`vitphase_lib.layers`; Methods, 'Layers, tokens and the single pass'):
``raw`` (patch embeddings before positional encoding, patch tokens only), ``pe`` (the input of the
blocks' stack: prefix tokens prepended, the additive position embedding added), ``1..L`` (block
outputs, the residual stream) and ``head`` (after the final norm).

The ``pe`` layer rule. Every model has the same layers. A model without an additive position
embedding (its positions enter inside attention only: rotary or relative position bias) adds
nothing at ``pe``, so there its patch tokens are the ``raw`` ones; ``ViTLayout.pe_note`` then says
why, and the metrics of the additive embedding (PE Dominance Ratio, PE scaling) are reported as not
applicable. A model with both (EVA-02: ``pos_embed`` and RoPE) has an additive embedding: those
metrics apply to it, and PE scaling scales ``pos_embed`` alone.

timm computes attention with a fused kernel that hides the weights; while tracing, the blocks use
timm's own unfused path (``fused_attn = False``), which computes the same softmax(QK^T/sqrt(d))V
explicitly, and a hook on ``attn_drop`` reads the weights. ``tests/test_capture.py`` checks that
the traced logits equal the untraced ones.

On a CPU the unfused path runs a few images at a time (:func:`images_per_attention_chunk`): the
whole batch's scores and weights would be written to memory and read back by the softmax, the
head average and weights @ V, a few images' stay in the cache. For mini-B (batch 250) this made
the unfused attention as fast as the fused kernel, where the whole batch took twice as long.
Besides the tokens, an attention call may get tensors (a mask; Eva's rotary embedding, BEiT's and
RelPos's shared relative position bias), all broadcast against the (B, heads, T, ...) queries or
scores: one shared by every image is handed whole to each chunk, and a call with one that holds a
row per image (:func:`_per_image`) runs on the whole batch at once.
"""
from __future__ import annotations

from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Callable, Iterator, Protocol, Sequence

import torch
from timm.models.beit import Beit
from timm.models.eva import Eva
from timm.models.vision_transformer import VisionTransformer
from timm.models.vision_transformer_relpos import VisionTransformerRelPos

from . import layers
from .models import UnsupportedModelError, check_vit


# --------------------------------------------------------------------------- supported classes
def _no_position_in_attention(model: torch.nn.Module) -> str | None:
    return None


def _eva_position_in_attention(model: Eva) -> str | None:
    return "rotary (RoPE)" if model.rope is not None else None


def _beit_position_in_attention(model: Beit) -> str | None:
    # one bias shared by the blocks (rel_pos_bias), or a table in each block's attention
    per_block = any(block.attn.relative_position_bias_table is not None for block in model.blocks)
    return "relative position bias" if model.rel_pos_bias is not None or per_block else None


def _relpos_position_in_attention(model: VisionTransformerRelPos) -> str | None:
    return "relative position bias"  # per block (attn.rel_pos) or shared (shared_rel_pos)


@dataclass(frozen=True)
class Family:
    """Where one timm ViT class keeps what the capture reads, beyond what all of them share.

    Shared by every family: ``patch_embed`` (its output is ``raw``), ``blocks[i].attn`` (timm
    attention with a ``fused_attn`` flag whose unfused path passes the weights through
    ``attn_drop``), ``norm`` (its output is ``head``; an Identity in models normed after pooling),
    ``num_prefix_tokens``, ``cls_token`` (None without [CLS]), ``embed_dim`` and an optional
    additive ``pos_embed``.
    """

    model_class: type[torch.nn.Module]
    examples: str     # timm model names of the class, for messages
    pe_input_of: str  # the submodule whose input is the ``pe`` layer
    position_in_attention: Callable[[torch.nn.Module], str | None]  # e.g. "rotary (RoPE)", or None


FAMILIES: tuple[Family, ...] = (
    # _pos_embed: prefix tokens + pos_embed, pos_drop; then patch_drop, norm_pre, blocks
    Family(VisionTransformer, "vit_*, deit_*, including register-token and global-pool variants",
           "patch_drop", _no_position_in_attention),
    # _pos_embed: prefix tokens + pos_embed (if any), pos_drop, patch_drop (often None); the rotary
    # embedding it returns is passed to every block's attention
    Family(Eva, "eva02_*, vit_*_rope_*, vit_*_dinov3", "pos_drop", _eva_position_in_attention),
    # forward_features: [CLS] + pos_embed (if any), pos_drop; relative bias in attention
    Family(Beit, "beit_*, beitv2_*", "pos_drop", _beit_position_in_attention),
    # forward_features prepends [CLS] (if any) and calls the blocks: nothing lies in between
    Family(VisionTransformerRelPos, "vit_relpos_*, vit_srelpos_*", "blocks.0",
           _relpos_position_in_attention),
)


def model_family(model: torch.nn.Module) -> Family:
    """The :class:`Family` of ``model``; :class:`UnsupportedModelError` for any other model."""
    check_vit(model)
    return next(family for family in FAMILIES if isinstance(model, family.model_class))


def _pe_note(model: torch.nn.Module, family: Family) -> str:
    """Why the additive position embedding's metrics do not apply ('' when they do)."""
    if getattr(model, "pos_embed", None) is not None:
        return ""
    inside = family.position_in_attention(model)
    return "no position embedding" if inside is None else \
        f"no additive position embedding: {inside} in attention"


# --------------------------------------------------------------------------- layout
@dataclass(frozen=True)
class ViTLayout:
    """What the analyses need to know about a ViT's token layout."""

    num_blocks: int
    num_prefix_tokens: int  # [CLS] + register (+ distillation) tokens
    has_cls: bool
    num_patches: int
    width: int
    pe_note: str = ""  # why the PE metrics do not apply ('' when they do): see the pe layer rule

    @property
    def layer_names(self) -> list[str]:
        return layers.layer_names(self.num_blocks)

    @property
    def cls_index(self) -> int | None:
        return 0 if self.has_cls else None


def vit_layout(model: torch.nn.Module) -> ViTLayout:
    family = model_family(model)
    for i, block in enumerate(model.blocks):
        attn = getattr(block, "attn", None)
        if attn is None or not hasattr(attn, "fused_attn") or not hasattr(attn, "attn_drop"):
            raise UnsupportedModelError(
                f"block {i} of {type(model).__name__} has no timm Attention module (.attn with "
                "fused_attn and attn_drop), so its attention weights cannot be read.")
    return ViTLayout(num_blocks=len(model.blocks), num_prefix_tokens=model.num_prefix_tokens,
                     has_cls=model.cls_token is not None, num_patches=model.patch_embed.num_patches,
                     width=model.embed_dim, pe_note=_pe_note(model, family))


class Sink(Protocol):
    """What :func:`trace` and :func:`~vitphase_lib.analysis.run_pass` call, per batch in this
    order: ``begin_batch``, the layers' callbacks as the model runs, ``on_logits``. It mirrors
    the callbacks of :class:`vitphase_lib.metrics.base.Accumulator`, which documents them and
    which every metric extends (``tests/test_accumulators.py`` checks the two agree). A sink must
    not keep references to the tensors. ``on_head_attention`` is called only for sinks whose
    ``reads_head_attention()`` is true (or, without that method, that define it): keeping every
    head's weights costs memory."""

    def begin_batch(self, labels: torch.Tensor, start: int | None = None) -> None: ...

    def on_tokens(self, layer: str, tokens: torch.Tensor) -> None: ...

    def on_attention(self, block: int, attention: torch.Tensor) -> None: ...

    def on_head_attention(self, block: int, weights: torch.Tensor) -> None: ...

    def on_logits(self, logits: torch.Tensor) -> None: ...


@contextmanager
def trace(model: torch.nn.Module, sinks: Sequence[Sink], attention: bool = True) -> Iterator[ViTLayout]:
    """While active, every forward pass of ``model`` feeds ``sinks``.

    ``on_tokens(layer, x)`` gets ``x`` of shape (B, T, D) (T = N for ``raw``, P + N otherwise);
    ``on_attention(block, a)`` gets the head-averaged, row-stochastic attention (B, T, T) in
    float32, for blocks numbered from 1. The model and its fused-attention flags are restored on
    exit, even after an error.

    Args:
        model: a model of one of :data:`FAMILIES`.
        sinks: what to feed, in order.
        attention: trace the attention weights too (the blocks then run unfused attention).
    """
    layout = vit_layout(model)
    pe_input_of = model.get_submodule(model_family(model).pe_input_of)
    handles = []

    def emit_tokens(layer: str, x: torch.Tensor) -> None:
        if x.ndim == 4:  # dynamic image size: (B, H, W, D)
            x = x.flatten(1, 2)
        with _full_precision(x):
            for sink in sinks:
                sink.on_tokens(layer, x)

    with unfused_attention(model) if attention else nullcontext():
        try:
            handles.append(model.patch_embed.register_forward_hook(
                lambda module, args, out: emit_tokens("raw", out)))
            # prefix tokens prepended, the additive position embedding (if any) added
            handles.append(pe_input_of.register_forward_pre_hook(
                lambda module, args: emit_tokens("pe", args[0])))
            for index, block in enumerate(model.blocks, start=1):
                handles.append(block.register_forward_hook(
                    lambda module, args, out, layer=str(index): emit_tokens(layer, out)))
                if attention:
                    handles.append(_trace_attention(block.attn, index, sinks))
            handles.append(model.norm.register_forward_hook(
                lambda module, args, out: emit_tokens("head", out)))
            yield layout
        finally:
            for handle in handles:
                handle.remove()


@contextmanager
def unfused_attention(model: torch.nn.Module) -> Iterator[None]:
    """While active, every block runs timm's unfused attention (``fused_attn = False``), the path
    whose weights pass through ``attn_drop``; each block's own flag is restored on exit."""
    flags = [block.attn.fused_attn for block in model.blocks]
    try:
        for block in model.blocks:
            block.attn.fused_attn = False
        yield
    finally:
        for block, flag in zip(model.blocks, flags):
            block.attn.fused_attn = flag


def _full_precision(x: torch.Tensor):
    """The sinks run outside the model's autocast: under bf16 autocast, ``a.float() @ b`` would
    still be computed in bf16, and the metrics' moments need full precision."""
    return torch.autocast(x.device.type, enabled=False)


# Float32 attention weights per CPU thread in one chunk of images, so that the chunk's scores and
# weights (about twice this) stay in the threads' caches between the softmax, the head average
# and weights @ V. Tuned on one 2-vCPU AMD EPYC (Zen 5) VM, one attention module: mini-B (batch
# 250, 6 heads, 50 tokens; 60 KB per image) took 24.7 ms unfused on the whole batch, 11.7-12.5 ms
# in chunks of 16 to 64 images, 12.3 ms fused; ViT-B/16 (batch 8, 12 heads, 197 tokens; 1.9 MB
# per image) 71 ms unfused, 67 ms one image at a time, 54 ms fused. Scaled with the threads, so
# that a many-core CPU gets chunks large enough to keep its cores busy.
CPU_ATTENTION_BYTES_PER_THREAD = 2**20


def images_per_attention_chunk(device: torch.device, heads: int, tokens: int, batch: int,
                               threads: int | None = None) -> int:
    """How many images the traced attention handles at a time: on a CPU, as many as keep their
    float32 weights within :data:`CPU_ATTENTION_BYTES_PER_THREAD` times ``threads`` (torch's
    intra-op threads by default), at least one; elsewhere (GPUs, whose memory is fast and whose
    kernels want large batches) the whole batch."""
    if device.type != "cpu":
        return batch
    threads = torch.get_num_threads() if threads is None else threads
    per_image = heads * tokens * tokens * 4
    return max(1, min(batch, threads * CPU_ATTENTION_BYTES_PER_THREAD // per_image))


class _TracedAttention:
    """Stands in for a timm ``Attention.forward`` while tracing: runs timm's unfused forward on a
    chunk of images at a time, head-averages each chunk's weights where ``attn_drop`` sees them,
    and hands the batch's averaged attention to the sinks before returning the output."""

    def __init__(self, attn: torch.nn.Module, block: int, sinks: Sequence[Sink]):
        self.attn, self.block, self.sinks = attn, block, list(sinks)
        self.forward = attn.forward  # the bound timm method
        self.averaged: list[torch.Tensor] = []
        self.per_head: list[torch.Tensor] | None = None  # kept only for sinks that read heads

    def read_weights(self, module, args, weights: torch.Tensor) -> None:
        with _full_precision(weights):
            # (B, heads, T, T) -> (B, T, T), accumulated in float32 without a float32 copy of
            # every head's weights (under bf16 autocast that copy would double their memory)
            self.averaged.append(weights.mean(dim=1, dtype=torch.float32))
            if self.per_head is not None:
                self.per_head.append(weights.float())

    def __call__(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        self.averaged.clear()  # left over if an earlier forward raised
        head_sinks = [sink for sink in self.sinks if _reads_heads(sink)]
        self.per_head = [] if head_sinks else None
        # a chunk of x gets every other argument whole: only arguments shared by all images
        per_image = any(_per_image(value) for value in (*args, *kwargs.values()))
        step = x.shape[0] if per_image else images_per_attention_chunk(
            x.device, getattr(self.attn, "num_heads", 1), x.shape[-2], x.shape[0])
        outputs = [self.forward(part, *args, **kwargs) for part in x.split(step)]
        if len(self.averaged) != len(outputs):
            raise UnsupportedModelError(
                f"block {self.block}: {type(self.attn).__name__} passed its attention weights "
                f"through attn_drop {len(self.averaged)} times in {len(outputs)} unfused calls; "
                "the capture reads them there once per call (timm's Attention), so it cannot "
                "trace this attention module.")
        averaged = _joined(self.averaged)
        self.averaged.clear()
        with _full_precision(averaged):
            for sink in self.sinks:
                sink.on_attention(self.block, averaged)
            if head_sinks:
                per_head, self.per_head = _joined(self.per_head), None
                for sink in head_sinks:
                    sink.on_head_attention(self.block, per_head)
        return _joined(outputs)


def _reads_heads(sink: Sink) -> bool:
    """Whether a sink reads every head's attention (costly: kept only for such sinks)."""
    reads = getattr(sink, "reads_head_attention", None)
    return reads() if callable(reads) else hasattr(sink, "on_head_attention")


def _per_image(value: object) -> bool:
    """Whether an attention argument besides the tokens may differ between images.

    timm adds a mask or relative position bias to the (B, heads, T, T) scores and multiplies a
    rotary embedding into the (B, heads, T, d) queries and keys, broadcasting: a tensor has a
    batch axis only if it has a dimension before its last three that is not 1 (a (B, 1, T, T)
    mask; a rotary embedding of Eva under patch dropout, (B, 1, N, d)). A shared one is (T, T),
    (heads, T, T), (1, heads, T, T) or (N, d). Flags and None are the same for every image; any
    other object is taken to be per image (the batch then runs whole, which is always right).
    """
    if value is None or isinstance(value, (bool, int, float)):
        return False
    if not isinstance(value, torch.Tensor):
        return True
    return any(size != 1 for size in value.shape[:-3])


def _joined(parts: list[torch.Tensor]) -> torch.Tensor:
    return parts[0] if len(parts) == 1 else torch.cat(parts)


class _Handle:
    """Undoes what :func:`_trace_attention` did, like the handle of a hook."""

    def __init__(self, undo: Callable[[], None]):
        self.remove = undo


def _trace_attention(attn: torch.nn.Module, block: int, sinks: Sequence[Sink]) -> _Handle:
    patched_before = vars(attn).get("forward")  # normally none: forward is the class's method
    if isinstance(patched_before, _TracedAttention):
        # a trace within a trace: one tracer with more sinks, so that every sink still gets the
        # whole batch (wrapping the outer tracer would hand it one chunk at a time)
        patched_before.sinks.extend(sinks)
        return _Handle(lambda: _remove_sinks(patched_before, sinks))
    traced = _TracedAttention(attn, block, sinks)
    hook = attn.attn_drop.register_forward_hook(traced.read_weights)
    attn.forward = traced  # an instance attribute: nn.Module.__call__ now runs it

    def undo() -> None:
        hook.remove()
        if patched_before is None:
            vars(attn).pop("forward", None)
        else:
            attn.forward = patched_before

    return _Handle(undo)


def _remove_sinks(traced: _TracedAttention, sinks: Sequence[Sink]) -> None:
    """Takes out the last occurrence of each of ``sinks`` (a sink may be in both traces)."""
    for gone in sinks:
        last = max(i for i, sink in enumerate(traced.sinks) if sink is gone)
        del traced.sinks[last]


@contextmanager
def scaled_positional_encoding(model: torch.nn.Module, alpha: float) -> Iterator[None]:
    """Evaluation-time intervention: z + PE becomes z + alpha * PE (Methods, 'PE Dominance Ratio
    and PE scaling').

    The [CLS] token's positional embedding (where the model has one) is scaled too; a rotary or
    relative position encoding the model also has (EVA-02's RoPE) is left as it is. The original
    embedding is restored on exit.

    Args:
        model: a model of one of :data:`FAMILIES` with an additive ``pos_embed``; any other raises
            :class:`UnsupportedModelError` naming the reason (e.g. rotary position embedding).
        alpha: the factor.
    """
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool):
        raise TypeError(f"alpha must be a number, got {alpha!r}")
    _require_additive_pe(model, "PE scaling")
    original = model.pos_embed.data.clone()
    try:
        model.pos_embed.data.mul_(float(alpha))
        yield
    finally:
        model.pos_embed.data.copy_(original)


def patch_positional_embedding(model: torch.nn.Module) -> torch.Tensor:
    """The additive positional embeddings of the N patch positions, shape (N, D)."""
    _require_additive_pe(model, "The PE Dominance Ratio")
    pe = model.pos_embed[0]
    # no_embed_class: the table holds the patches only (Beit has no such flag: it covers [CLS])
    return pe if getattr(model, "no_embed_class", False) else pe[model.num_prefix_tokens:]


def _require_additive_pe(model: torch.nn.Module, what: str) -> None:
    note = _pe_note(model, model_family(model))
    if note:
        raise UnsupportedModelError(
            f"{what} needs an additive positional embedding (z + PE), and {type(model).__name__} "
            f"has none ({note}); it does not apply to this model.")
