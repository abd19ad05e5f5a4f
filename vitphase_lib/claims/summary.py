"""The Summary chapter: every claim's verdict from a study's cached tables (T11), how many hold,
and what each departure from the paper would point to."""
from __future__ import annotations

from collections.abc import Sequence

from .. import layers
from .c1_phases import check_depth_lengthens_plateau, check_phases, phase_verdicts
from .c2_positional import CLIFF_MEASURES, check_pe_drives_cliff
from .c3_attention import attention_landmarks, check_cls_marginalization
from .c4_scrambling import check_scrambling_regimes, isi_summary
from .c5_collapse_tradeoff import check_collapse_b_vs_l, check_tradeoff_offset, readout_rows, tradeoff_layers
from .verdict import ClaimCheck


def all_checks(study) -> list[ClaimCheck]:
    """Every claim's verdict from a study's cached tables (the Summary chapter's T11)."""
    from ..metrics import phase_table
    per_layer = study.collect("analysis", "per_layer")
    phases = phase_table(per_layer)
    summary = study.collect("analysis", "summary")
    scaled = study.collect("pe_scaling", "per_layer")
    c2_table = summary[["model", "pe_dominance_ratio"]].merge(
        phases[["model", *CLIFF_MEASURES]], on="model")
    landmarks = attention_landmarks(study.collect("analysis", "attention"), phases)
    collapse = study.collect("analysis", "collapse")
    final = readout_rows(collapse[collapse.layer == layers.HEAD])
    probes = study.collect("analysis", "probes")
    return [
        check_phases(phases),
        check_depth_lengthens_plateau(phases),
        check_pe_drives_cliff(c2_table, study.collect("pe_scaling", "top1"),
                              phase_table(scaled, by=("model", "alpha"))),
        check_cls_marginalization(landmarks, summary[["model", "top1"]],
                                  phase_verdicts(phases).set_index("model").climb),
        check_scrambling_regimes(isi_summary(study.collect("analysis", "scrambling"), *study.isi_thresholds),
                                 study.models),
        check_collapse_b_vs_l(final, study.models),
        check_tradeoff_offset(tradeoff_layers(probes, study.tradeoff_fraction), study.models),
    ]


def short_name(check: ClaimCheck) -> str:
    """The claim's label without its description: 'C5a' of 'C5a final geometry B vs L'."""
    return check.claim.split()[0]


def describe_outcome(checks: Sequence[ClaimCheck], configs: Sequence = ()) -> str:
    """How many checks hold (naming them, and those that do not or cannot be tested), and, for a
    build of mini-zoo models (``configs``: their ``MiniViTConfig``), how these models differ from
    the paper's, which limits what a failure here means."""
    held = [c.claim + (" (where testable)" if c.partly_untested else "") for c in checks if c.holds]
    failed = [c.claim for c in checks if c.holds is False]
    untested = [c.claim for c in checks if c.holds is None]
    text = f"In this build **{len(held)} of {len(checks)}** checks hold"
    if held:
        text += f" ({', '.join(held)})"
    if failed:
        text += f"; **{len(failed)} do not** ({', '.join(failed)})"
    if untested:
        text += f"; {len(untested)} cannot be tested with these models ({', '.join(untested)})"
    text += "."
    if configs:
        sizes = " or ".join(sorted({f"{c.img_size} x {c.img_size}" for c in configs}))
        patches = " or ".join(map(str, sorted({(c.img_size // c.patch_size) ** 2 for c in configs})))
        text += (f" This build's models are small ViTs trained from scratch ({{ref}}`chap-models`) "
                 f"on {sizes} grey images with {patches} patches, not ImageNet models with 196: a "
                 "claim that fails here may depend on scale, data or training length, and one that "
                 "holds here is evidence that the mechanism does not need them.")
    return text


# What each departure would point to, shown only for the claims that do not hold in a build.
READINGS = {
    "C1": "the three phases may not be a generic property of ViTs: a long flat Plateau ended by "
          "a short Climb may need what the paper's models have and these lack (more depth than "
          "the task needs, a harder task, longer training)",
    "C1b": "depth may lengthen other stretches of the curve than the Plateau at this scale",
    "C2": "the Cliff may be set by more than the positional encoding's strength at this scale",
    "C3": "these models may not need to route through a [CLS] hub: with few classes and few "
          "patches, [CLS] can read the patches without first becoming a hub and then giving it up; "
          "and the paper's 0.01 is an absolute share set with 197 tokens (uniform share 0.005), "
          "so {ref}`chap-attention` also reads centrality as a multiple of the uniform share, "
          "which carries across token counts",
    "C4": "the ISI's absolute regime thresholds may not transfer to other patch counts and "
          "decoders; the relative comparison of the models ({ref}`chap-scrambling`) is the "
          "part that can",
    "C5a": "the deeper model's extra blocks may not cost final-layer geometry at this scale",
    "C5b": "the deeper model may waste less of its extra depth than ViT-L does",
}


def describe_departures(checks: Sequence[ClaimCheck]) -> str:
    """A bullet per claim that does not hold: its reason and what the departure suggests."""
    departures = [c for c in checks if c.holds is False]
    if not departures:
        return "Every testable claim holds in this build."
    return "Where this build departs from the paper, and what it suggests:\n\n" + "\n".join(
        f"- **{short_name(c)}** ({c.reason}): {READINGS.get(short_name(c), 'see the chapter')}."
        for c in departures)
