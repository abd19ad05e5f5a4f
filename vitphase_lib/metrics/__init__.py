"""Streaming metric accumulators (one concern per module) and the per-curve analyses."""
from .base import Accumulator, NonFiniteActivationError
from .geometry import TokenGeometry, pairwise_cosine_mean, pe_dominance_ratio
from .phases import PhaseSegmentation, phase_table, segment_phases
from .task import FiniteCheck, Top1

__all__ = [
    "Accumulator", "NonFiniteActivationError", "TokenGeometry", "pairwise_cosine_mean",
    "pe_dominance_ratio", "PhaseSegmentation", "phase_table", "segment_phases", "FiniteCheck", "Top1",
]
