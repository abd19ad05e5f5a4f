"""What a "Beyond the paper" chapter returns: the answer to one open question, computed from the
variant zoo's tables, in the one vocabulary of the Summary's table C6."""
from __future__ import annotations

from dataclasses import dataclass

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
        """The chapter's bold answer: '**Answer (smoke profile): inconclusive** — why.'"""
        return f"**{self.question} Answer ({profile} profile): {self.verdict}** — {self.reason}."


def not_answerable(question: str, experiment: str, evidence: str, why: str) -> Answer:
    """The answer when the build lacks what the question needs (no variant zoo, no seeds)."""
    return Answer(question, experiment, why, evidence, None, why)
