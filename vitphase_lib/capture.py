"""One forward pass of a timm ViT, every layer's tokens and every block's attention.

:func:`trace` registers forward hooks on a timm ``VisionTransformer`` and hands each layer's
tokens and each block's head-averaged attention to a list of *sinks* (the streaming metric
accumulators of :mod:`vitphase_lib.metrics`) the moment the model produces them. Nothing is kept
after a sink has read it, so memory does not grow with the number of images, and at most one
block's attention map exists at a time beside the model's own activations.

Layers, in order (METRICS.md): ``raw`` (patch embeddings before positional encoding, patch tokens
only), ``pe`` (after positional encoding, prefix tokens prepended), ``1..L`` (block outputs, the
residual stream) and ``head`` (after the final norm).

timm computes attention with a fused kernel that hides the weights; while tracing, the blocks use
timm's own unfused path (``fused_attn = False``), which computes the same softmax(QK^T/sqrt(d))V
explicitly, and a hook on ``attn_drop`` reads the weights. ``tests/test_capture.py`` checks that
the traced logits equal the untraced ones.

On a CPU the unfused path runs a few images at a time (:func:`images_per_attention_chunk`): the
whole batch's scores and weights would be written to memory and read back by the softmax, the
head average and weights @ V, a few images' stay in the cache. For mini-B (batch 250) this made
the unfused attention as fast as the fused kernel, where the whole batch took twice as long.
"""
from __future__ import annotations

from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Callable, Iterator, Protocol, Sequence

import torch
from timm.models.vision_transformer import VisionTransformer

from .models import UnsupportedModelError, check_vit


@dataclass(frozen=True)
class ViTLayout:
    """What the analyses need to know about a ViT's token layout."""

    num_blocks: int
    num_prefix_tokens: int  # [CLS] + register (+ distillation) tokens
    has_cls: bool
    num_patches: int
    width: int

    @property
    def layer_names(self) -> list[str]:
        return ["raw", "pe"] + [str(i) for i in range(1, self.num_blocks + 1)] + ["head"]

    @property
    def cls_index(self) -> int | None:
        return 0 if self.has_cls else None


def vit_layout(model: torch.nn.Module) -> ViTLayout:
    vit = check_vit(model)
    for i, block in enumerate(vit.blocks):
        attn = getattr(block, "attn", None)
        if attn is None or not hasattr(attn, "fused_attn") or not hasattr(attn, "attn_drop"):
            raise UnsupportedModelError(
                f"block {i} of {type(vit).__name__} has no timm Attention module (.attn with "
                "fused_attn and attn_drop), so its attention weights cannot be read.")
    return ViTLayout(num_blocks=len(vit.blocks), num_prefix_tokens=vit.num_prefix_tokens,
                     has_cls=vit.cls_token is not None, num_patches=vit.patch_embed.num_patches,
                     width=vit.embed_dim)


class Sink(Protocol):
    """What :func:`trace` calls. Implementations must not keep references to the tensors."""

    def on_tokens(self, layer: str, tokens: torch.Tensor) -> None: ...

    def on_attention(self, block: int, attention: torch.Tensor) -> None: ...


@contextmanager
def trace(model: VisionTransformer, sinks: Sequence[Sink], attention: bool = True) -> Iterator[ViTLayout]:
    """While active, every forward pass of ``model`` feeds ``sinks``.

    ``on_tokens(layer, x)`` gets ``x`` of shape (B, T, D) (T = N for ``raw``, P + N otherwise);
    ``on_attention(block, a)`` gets the head-averaged, row-stochastic attention (B, T, T) in
    float32, for blocks numbered from 1. The model and its fused-attention flags are restored on
    exit, even after an error.
    """
    layout = vit_layout(model)
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
            # the input of patch_drop is the output of _pos_embed: z + PE with prefix tokens
            handles.append(model.patch_drop.register_forward_pre_hook(
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
def unfused_attention(model: VisionTransformer) -> Iterator[None]:
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

    def read_weights(self, module, args, weights: torch.Tensor) -> None:
        with _full_precision(weights):
            # (B, heads, T, T) -> (B, T, T), accumulated in float32 without a float32 copy of
            # every head's weights (under bf16 autocast that copy would double their memory)
            self.averaged.append(weights.mean(dim=1, dtype=torch.float32))

    def __call__(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        self.averaged.clear()  # left over if an earlier forward raised
        masked = any(value is not None for value in (*args, *kwargs.values())
                     if not isinstance(value, bool))
        step = x.shape[0] if masked else images_per_attention_chunk(
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
        return _joined(outputs)


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
def scaled_positional_encoding(model: VisionTransformer, alpha: float) -> Iterator[None]:
    """Evaluation-time intervention: z + PE becomes z + alpha * PE (METRICS.md, PE scaling).

    The [CLS] token's positional embedding (where the model has one) is scaled too. The original
    embedding is restored on exit.
    """
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool):
        raise TypeError(f"alpha must be a number, got {alpha!r}")
    if model.pos_embed is None:
        raise UnsupportedModelError(f"{type(model).__name__} has no learned positional embedding to scale")
    original = model.pos_embed.data.clone()
    try:
        model.pos_embed.data.mul_(float(alpha))
        yield
    finally:
        model.pos_embed.data.copy_(original)


def patch_positional_embedding(model: VisionTransformer) -> torch.Tensor:
    """The positional embeddings of the N patch positions, shape (N, D)."""
    pe = model.pos_embed[0]
    return pe if model.no_embed_class else pe[model.num_prefix_tokens:]
