"""Task accuracy and the finiteness guard of the streaming pass."""
from __future__ import annotations

import pandas as pd
import torch

from ..capture import ViTLayout
from .base import Accumulator, NonFiniteActivationError


class Top1(Accumulator):
    """Top-1 accuracy of the model's own classifier."""

    name = "top1"

    def __init__(self, layout: ViTLayout):
        super().__init__(layout)
        self.add_state("correct", "images")

    def on_logits(self, logits: torch.Tensor) -> None:
        self.add("correct", (logits.argmax(-1) == self.labels).sum())
        self.add("images", len(logits))

    def result(self) -> pd.DataFrame:
        images = float(self.sums["images"])
        return pd.DataFrame([{"top1": 100.0 * float(self.sums["correct"]) / images,
                              "images": int(images)}])


class FiniteCheck(Accumulator):
    """Counts, per layer, the batches with NaN/inf activations, on the device (no host sync per
    batch); :meth:`check` raises once, at the end, naming the first offending layer.

    A batch is flagged when the sum of its activations is not finite: any NaN or inf makes the sum
    NaN or inf, while finite activations overflow a float32 sum only near 3e38 / their number (3e32
    for a million values), far beyond any working model. One reduction per layer, against four
    passes (and a boolean copy of the tokens) for ``isfinite(tokens).all()``; ``vitphase bench``
    counts this check in the capture's overhead."""

    name = "finite"

    def __init__(self, layout: ViTLayout):
        super().__init__(layout)
        self.add_state("nonfinite", per="layer")

    def on_tokens(self, layer: str, tokens: torch.Tensor) -> None:
        self.add(f"{layer}/nonfinite", ~torch.isfinite(tokens.sum()))

    def check(self) -> None:
        for layer in self.layout.layer_names:
            bad = int(self.sums.get(f"{layer}/nonfinite", 0))
            if bad:
                raise NonFiniteActivationError(
                    f"layer {layer!r} produced NaN/inf activations in {bad} batch(es). Common causes: "
                    "fp16 overflow (use dtype='bfloat16' or 'float32'), corrupt weights, or "
                    "images that were not normalised. Nothing was cached.")

    def result(self) -> pd.DataFrame:
        return pd.DataFrame([{"layer": layer, "nonfinite": int(self.sums[f"{layer}/nonfinite"])}
                             for layer in self.layout.layer_names if f"{layer}/nonfinite" in self.sums])
