"""The numbers the paper reports (arXiv:2511.21635), and which paper model each of ours stands in
for. Every chapter and check reads them from here; the Methods page says where they come from."""
from __future__ import annotations

from ..metrics.scrambling import ISI_THRESHOLDS

PAPER = {
    "cliff": {"ViT-S": (0.020, -0.002), "ViT-L": (0.021, -0.005)},  # S before -> after PE
    "cls_centrality_vit_b": (0.502, 0.004),
    "tokens_vit_b": 197,  # [CLS] + 196 patches: ViT-B/16's uniform attention share is 1/197
    "patches": 196,  # ViT-S/B/L/16 at 224 px: the paper's centering floor is -1/195
    "isi_band_vit_b": (0.004, 0.009),
    "isi_peak_vit_l": 0.031,
    "tradeoff_offset_layers": 10,  # ViT-L reaches ViT-B's trade-off about 10 blocks later ...
    "blocks_added_b_to_l": 12,  # ... with 12 more blocks (24 against 12)
    "isi_failure_threshold": ISI_THRESHOLDS[1],  # the chaotic regime starts above it
    "cls_centrality_failure_threshold": 0.01,
    "climb_blocks": (3, 4),
}

# Which paper model each of our models stands in for (by position in the profile: S, B, L).
PAPER_NAMES = ("ViT-S", "ViT-B", "ViT-L")


def paper_name(models: tuple[str, ...] | list[str], model: str) -> str | None:
    """The paper model ``model`` stands in for: by its position in ``models`` when there are
    three (S, B, L); None otherwise."""
    index = list(models).index(model)
    return PAPER_NAMES[index] if len(models) == 3 else None
