"""Streaming metric accumulators (one concern per module) and the per-curve analyses.

:data:`ACCUMULATORS` lists every accumulator class: the contract test
(``tests/test_accumulators.py``) runs each of them, and checks that none is missing.
"""
from .attention import AttentionGraph, AttentionHeads
from .base import Accumulator, NonFiniteActivationError
from .collapse import CollapseMoments, NearestClassCenter
from .geometry import TokenGeometry, pairwise_cosine_mean, pe_dominance_ratio
from .phases import PhaseSegmentation, phase_table, segment_phases
from .probes import FeatureCollector
from .retention import RawCKA
from .scrambling import DecoderFit, DecoderScore, TokenMoments
from .task import FiniteCheck, Top1

ACCUMULATORS: tuple[type[Accumulator], ...] = (
    TokenGeometry, Top1, FiniteCheck,                 # task and token geometry
    AttentionGraph, AttentionHeads,                   # attention
    CollapseMoments, NearestClassCenter,              # Neural Collapse (NC4: a second pass)
    TokenMoments, DecoderFit, DecoderScore,           # information scrambling (three passes)
    FeatureCollector,                                 # linear probes
    RawCKA,                                           # retention of the raw embeddings
)

__all__ = [
    "ACCUMULATORS", "Accumulator", "NonFiniteActivationError", "TokenGeometry",
    "pairwise_cosine_mean", "pe_dominance_ratio", "PhaseSegmentation", "phase_table",
    "segment_phases", "FiniteCheck", "Top1", "AttentionGraph", "AttentionHeads",
    "CollapseMoments", "NearestClassCenter", "TokenMoments", "DecoderFit", "DecoderScore",
    "FeatureCollector", "RawCKA",
]
