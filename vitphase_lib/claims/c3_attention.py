"""C3, [CLS] marginalisation and patch consensus: CLS centrality falls across depth to at most
0.01, the Attention Consensus Index rises in the Climb, and the better model marginalises more;
with T6 (landmarks beside the paper), the per-head table and the Attention chapter's prose
(Methods, 'Attention graph')."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .c1_phases import phase_blocks
from .paper import PAPER, paper_name
from .verdict import ClaimCheck, claim_from_parts, part

# [CLS] counts as a hub where patches give it at least this multiple of the uniform share
# 1/(P + N) (the paper's ViT-B starts at 99x); read as a multiple, centrality compares across
# token counts, which the absolute shares do not
HUB_MIN_X_UNIFORM = 2.0


def attention_landmarks(attention: pd.DataFrame, phases: pd.DataFrame) -> pd.DataFrame:
    """T6: CLS centrality, PageRank share and ACI at the first block, mid-Plateau and the last
    block per model, and the two failure signatures of the paper."""
    rows = []
    threshold = PAPER["cls_centrality_failure_threshold"]
    for model, frame in attention.groupby("model", sort=False):
        frame = frame.set_index("block")
        blocks = int(frame.index.max())
        plateau, climb = phase_blocks(phases.set_index("model").loc[model], blocks)
        mid = plateau[len(plateau) // 2] if plateau else blocks // 2
        ccc = frame.cls_centrality
        plateau_ccc = float(ccc.loc[plateau].median()) if plateau else float("nan")
        late_peak = float(ccc.loc[climb].max()) if climb else float("nan")
        late_peak_block = int(ccc.loc[climb].idxmax()) if climb and ccc.loc[climb].notna().any() else None
        uniform = float(frame.uniform_baseline.iloc[0])  # 1 / (P + N)
        rows.append({
            "model": model, "mid_block": mid,
            "ccc_first": float(ccc.loc[1]), "ccc_mid": float(ccc.loc[mid]), "ccc_last": float(ccc.loc[blocks]),
            # the same in multiples of the uniform share, which depends on the number of tokens
            "uniform_share": uniform, "ccc_first_x_uniform": float(ccc.loc[1]) / uniform,
            "ccc_last_x_uniform": float(ccc.loc[blocks]) / uniform,
            "pagerank_first": float(frame.cls_pagerank_share.loc[1]),
            "pagerank_last": float(frame.cls_pagerank_share.loc[blocks]),
            "aci_first": float(frame.aci.loc[1]), "aci_mid": float(frame.aci.loc[mid]),
            "aci_last": float(frame.aci.loc[blocks]),
            "aci_plateau_mean": float(frame.aci.loc[plateau].mean()) if plateau else float("nan"),
            "aci_climb_mean": float(frame.aci.loc[climb].mean()) if climb else float("nan"),
            # failure signatures (paper): a late re-centralisation spike; incomplete marginalisation
            # without a Plateau (no median to compare with) the failure threshold alone decides
            "late_spike": bool(climb) and late_peak > (max(2 * plateau_ccc, threshold) if plateau else threshold),
            "late_peak_block": late_peak_block,  # the block of the Climb's highest centrality
            "incomplete_marginalization": bool(float(ccc.loc[blocks]) > threshold),
        })
    return pd.DataFrame(rows)


def _with_cls(landmarks: pd.DataFrame) -> pd.DataFrame:
    """The landmarks of the models that have a [CLS] token (the others have NaN centrality)."""
    return landmarks[landmarks.ccc_first.notna()]


def check_cls_marginalization(landmarks: pd.DataFrame, top1: pd.DataFrame,
                              climbs: pd.Series) -> ClaimCheck:
    """C3: [CLS] centrality falls across depth to <= 0.01 at the last block, patch consensus (ACI)
    is higher in the Climb than on the Plateau, and the better model marginalises more.

    ``climbs``: model -> whether it has a Climb by C1's criteria (``phase_verdicts(...).climb``).
    The ACI part is judged on those models only: elsewhere the segmentation's last piece is not a
    Climb, and with no Climb in any model that part is not testable (the reason says so)."""
    if landmarks[["ccc_first", "ccc_last"]].isna().all().all():
        return ClaimCheck("C3 CLS marginalisation", "CCC 0.502 -> 0.004 across ViT-B", "no model has a [CLS] token",
                          None, "CLS centrality is not applicable without [CLS]")
    # models without [CLS] (global pooling) have no hub to marginalise: the claim is about the others
    landmarks = _with_cls(landmarks)
    falls = landmarks.ccc_last < landmarks.ccc_first
    marginal = ~landmarks.incomplete_marginalization
    climbing = climbs.reindex(landmarks.model)
    if climbing.isna().any():
        raise ValueError(f"climbs has no verdict for {list(landmarks.model[climbing.isna().to_numpy()])}: "
                         "pass phase_verdicts(phases).set_index('model').climb")
    climbing = pd.Series(climbing.to_numpy(dtype=bool), index=landmarks.index)
    rises = landmarks.aci_climb_mean > landmarks.aci_plateau_mean
    consensus = bool(rises[climbing].all()) if climbing.any() else None
    merged = landmarks.merge(top1, on="model")
    ranked = None
    if len(merged) >= 3:
        rho = merged[["top1", "ccc_last"]].corr(method="spearman").iloc[0, 1]
        ranked = None if np.isnan(rho) else bool(rho < 0)  # NaN: all tied, no ranking to test
    measured = "; ".join(
        f"{r.model}: CCC {r.ccc_first:.3f} -> {r.ccc_last:.3f} ({r.ccc_first_x_uniform:.2f}x -> "
        f"{r.ccc_last_x_uniform:.2f}x uniform), ACI plateau {r.aci_plateau_mean:.3f} "
        + (f"vs climb {r.aci_climb_mean:.3f}" if climb else
           f"vs last blocks {r.aci_climb_mean:.3f} (no Climb)")
        + (", late spike" if r.late_spike else "")
        for r, climb in zip(landmarks.itertuples(), climbing))
    if ranked is not None:
        measured += ("; the more accurate model ends with the lower CCC" if ranked else
                     "; the more accurate model does not end with the lower CCC")
    threshold = PAPER["cls_centrality_failure_threshold"]
    parts = (("CCC falls", bool(falls.all())), (f"CCC <= {threshold} at the end", bool(marginal.all())),
             part("ACI rises in the Climb", consensus, "no model has a Climb by C1's criteria"),
             part("better model marginalises more", ranked,
                  "fewer than 3 models" if len(merged) < 3 else
                  "top-1 or the final CCC all tied: no ranking"))
    first, last = PAPER["cls_centrality_vit_b"]
    tokens = PAPER["tokens_vit_b"]
    return claim_from_parts("C3 CLS marginalisation and consensus",
                            f"CCC {first} -> {last} across ViT-B ({first * tokens:.0f}x -> "
                            f"{last * tokens:.1f}x the uniform share 1/{tokens}); ACI rises in "
                            "the Climb", measured, parts)


# ---------------------------------------------------------------------- T6 and the per-head table
CLS_COLUMNS = ["ccc_first", "ccc_mid", "ccc_last", "pagerank_first", "pagerank_last", "late_spike",
               "incomplete_marginalization"]  # what a model without [CLS] does not have


def landmarks_beside_paper(landmarks: pd.DataFrame, models: tuple[str, ...] | list[str],
                           no_cls: list[str]) -> pd.DataFrame:
    """T6: the landmarks per model, the paper model it stands in for and the paper's first and
    last centrality where it reports them (ViT-B; 'n/r' elsewhere). For the models of ``no_cls``
    (no [CLS] token) the [CLS] columns read 'not applicable'."""
    paper_first, paper_last = PAPER["cls_centrality_vit_b"]
    t6 = landmarks[["model", "ccc_first", "ccc_mid", "ccc_last", "pagerank_first", "pagerank_last",
                    "aci_first", "aci_mid", "aci_last", "late_spike", "incomplete_marginalization"]].copy()
    t6.insert(1, "paper model", [paper_name(models, m) or "-" for m in t6.model])
    t6["paper ccc first / last"] = [f"{paper_first} / {paper_last}" if p == "ViT-B" else "n/r"
                                    for p in t6["paper model"]]
    t6[CLS_COLUMNS] = t6[CLS_COLUMNS].astype(object)
    t6.loc[t6.model.isin(no_cls), CLS_COLUMNS] = "not applicable"
    return t6


def heads_in_uniform_units(heads: pd.DataFrame, attention: pd.DataFrame,
                           models: pd.Series | list[str]) -> pd.DataFrame:
    """The per-head table of ``models`` with ``x_uniform``: each head's CLS centrality as a
    multiple of its model's uniform share 1/(P + N)."""
    uniform = attention.groupby("model").uniform_baseline.first()
    heads = heads[heads.model.isin(models)].copy()
    heads["x_uniform"] = heads.cls_centrality / heads.model.map(uniform)
    return heads


def last_block_heads(heads: pd.DataFrame, attention: pd.DataFrame) -> pd.DataFrame:
    """Per model, at its last block (rows of :func:`heads_in_uniform_units`): how many heads give
    [CLS] more than the uniform share (keep the hub) and how many do not (marginalize it), the
    most and least central head and the head-averaged centrality, all as multiples of it."""
    uniform = attention.groupby("model").uniform_baseline.first()
    last = heads[heads.block == heads.groupby("model").block.transform("max")]
    table = last.groupby("model", sort=False).agg(
        heads=("head", "size"), keep_hub=("x_uniform", lambda x: int((x > 1).sum())),
        marginalize=("x_uniform", lambda x: int((x <= 1).sum())),
        most_central=("x_uniform", "max"), least_central=("x_uniform", "min")).reset_index()
    averaged = attention.set_index(["model", "block"]).cls_centrality
    last_block = last.groupby("model", sort=False).block.first()
    table["head_averaged"] = [float(averaged[(m, last_block[m])] / uniform[m]) for m in table.model]
    return table


# ---------------------------------------------------------------------- the chapter's prose
def describe_failure_signatures(landmarks: pd.DataFrame) -> str:
    """Which models show the paper's failure signatures: a late centrality spike (at which
    block) and incomplete marginalisation (centrality above 0.01 at the last block)."""
    cls_models = _with_cls(landmarks)
    if cls_models.empty:
        return ("CLS centrality is not applicable to these models (no [CLS] token), so neither "
                "failure signature can occur.")
    threshold = PAPER["cls_centrality_failure_threshold"]
    spikes = cls_models[cls_models.late_spike.astype(bool)]
    unfinished = cls_models[cls_models.incomplete_marginalization.astype(bool)]
    spike_text = ("a late centrality spike in " + ", ".join(
        f"{r.model} (block {int(r.late_peak_block)})" for r in spikes.itertuples())
        if len(spikes) else "no late centrality spike")
    unfinished_text = (f"centrality above {threshold} at the last block (incomplete "
                       "marginalisation) in " + ", ".join(f"{r.model} ({r.ccc_last:.4f})"
                                                         for r in unfinished.itertuples())
                       if len(unfinished) else
                       f"every model with [CLS] ends with centrality at or below {threshold}")
    return f"Failure signatures in this build: {spike_text}; {unfinished_text}."


def describe_aci_precision(attention: pd.DataFrame) -> str:
    """How many images the ACI averages over, its largest standard error, and its range per
    model across blocks."""
    worst = attention.loc[attention.aci_sem.idxmax()] if attention.aci_sem.notna().any() else None
    error = (f"{worst.aci_sem:.4f} ({worst.model}, block {int(worst.block)})"
             if worst is not None else "n/a")
    ranges = ", ".join(f"{m} {f.aci.min():.3f}-{f.aci.max():.3f}"
                       for m, f in attention.groupby("model", sort=False))
    return (f"The ACI is a mean over the first {int(attention.aci_images.min())} images of each "
            f"model (`aci_max_images`); the other curves use all {int(attention.images.min())}. "
            f"Its standard error across images is at most {error}; across blocks the ACI ranges "
            f"over {ranges}.")


def describe_no_cls(no_cls: list[str]) -> str:
    """What is not applicable to the models without a [CLS] token ('' when every model has one)."""
    if not no_cls:
        return ""
    return (f"CLS centrality, the [CLS] PageRank share and the failure signatures are **not "
            f"applicable** to {', '.join(no_cls)}: these models have no [CLS] token (they pool "
            "the patch tokens), so there is no hub to marginalise. Their ACI is reported, and C3 "
            "below is judged on the other models.")


def describe_verdict(check: ClaimCheck, profile: str) -> str:
    """The chapter's verdict on C3, its reason and the per-model measurements."""
    return f"{check.headline(profile, 'C3')} — {check.reason}.\n\nPer model: {check.measured}."


def describe_uniform_reading(landmarks: pd.DataFrame) -> str:
    """Centrality as a multiple of the uniform share, which carries across token counts: the
    paper's ViT-B against each model here, how many end below their even share, and whether any
    starts with a hub (at least ``HUB_MIN_X_UNIFORM``). '' without a model with [CLS]."""
    cls_models = _with_cls(landmarks)
    if cls_models.empty:
        return ""
    paper_first, paper_last = PAPER["cls_centrality_vit_b"]
    tokens = PAPER["tokens_vit_b"]
    below = cls_models[cls_models.ccc_last_x_uniform < 1]
    hub = cls_models.loc[cls_models.ccc_first_x_uniform.idxmax()]
    per_model = ", ".join(f"{r.model} goes from {r.ccc_first_x_uniform:.2f}x to "
                          f"{r.ccc_last_x_uniform:.2f}x (uniform share {r.uniform_share:.4f})"
                          for r in cls_models.itertuples())
    like_paper = ", as the paper's ViT-B does" if len(below) else ""
    first_block = ("no model starts with a [CLS] hub to marginalise."
                   if hub.ccc_first_x_uniform < HUB_MIN_X_UNIFORM
                   else "the first block does route attention through [CLS].")
    return (f"On that reading the paper's ViT-B goes from {paper_first * tokens:.0f}x to "
            f"{paper_last * tokens:.2f}x the uniform share. In this build {per_model}. At the "
            f"last block {len(below)} of {len(cls_models)} models give [CLS] less than its even "
            f"share{like_paper}; at the first block the largest share is "
            f"{hub.ccc_first_x_uniform:.2f}x uniform ({hub.model}), against the paper's "
            f"{paper_first * tokens:.0f}x: {first_block}")
