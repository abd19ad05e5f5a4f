"""What a "Beyond the paper" chapter returns: the answer to one open question, computed from the
variant zoo's tables, in the one vocabulary of the Summary's table C6."""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

NO_VARIANTS = "this profile names no variant zoo (parameter 'variants')"
# answer -> the verdict written in table C6
VERDICTS = {True: "answered yes", False: "answered no", None: "inconclusive"}


@dataclass(frozen=True)
class Answer:
    """One question's answer in a build: the experiment, what was found, where, and the verdict.

    ``answer`` is None when the data cannot decide: the differences are within the seed spread
    (or within the bootstrap interval, for a correlation), or a model the question needs is
    missing."""

    question: str
    experiment: str
    found: str
    evidence: str   # the figures and tables that show it
    answer: bool | None
    reason: str

    @property
    def verdict(self) -> str:
        return VERDICTS[self.answer]

    def as_row(self) -> dict:
        """The answer as a row of the Summary's table C6."""
        return {"question": self.question, "experiment": self.experiment,
                "what this build found": self.found, "evidence": self.evidence,
                "verdict": self.verdict}

    def headline(self, profile: str) -> str:
        """The chapter's bold answer: '**Does depth hurt? Answer (smoke profile): inconclusive** — why.'"""
        return f"**{self.question} Answer ({profile} profile): {self.verdict}** — {self.reason}."


@dataclass(frozen=True)
class Question:
    """One open question: its words, the experiment that answers it, and the figures and tables
    that show the evidence; :meth:`answer` and :meth:`cannot_answer` make its :class:`Answer`."""

    text: str
    experiment: str
    evidence: str

    def answer(self, found: str, answer: bool | None, reason: str) -> Answer:
        return Answer(self.text, self.experiment, found, self.evidence, answer, reason)

    def cannot_answer(self, why: str) -> Answer:
        """The answer when the build lacks what the question needs (no variant zoo, no seeds)."""
        return Answer(self.text, self.experiment, why, self.evidence, None, why)


NO_SPREAD = "no seed spread to judge against"


class Sides(NamedTuple):
    """What :func:`sides` found: the compared things judged better, worse, and undecided (no
    seed spread for that quantity)."""

    better: list
    worse: list
    undecided: list

    def within(self) -> str:
        """The reason when nothing is better or worse: every difference within the spread."""
        return ("every difference is within the seed spread"
                + (f" ({', '.join(self.undecided)}: no spread to judge by)" if self.undecided else ""))


def sides(outcomes: dict) -> Sides | None:
    """The keys of ``outcomes`` (values of :func:`.headline.compare`) by verdict; None when none
    could be judged (no seed spread)."""
    if all(v == "unknown" for v in outcomes.values()):
        return None
    return Sides(*([k for k, v in outcomes.items() if v == verdict] for verdict in ("better", "worse", "unknown")))
