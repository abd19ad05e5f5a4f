"""What a claim check returns, and the one vocabulary of verdicts.

A claim holds, does not hold, or cannot be tested with a build's data; a claim tested in parts
can also hold where testable (no part fails, some could not be tested). Each verdict has two
spellings from the same table, :data:`ANSWERS`: the answer to the Summary's "holds here?" column
and the phrase the chapters write after the claim's name ("C3 holds where testable").
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

Part = tuple[str, "bool | None"]  # a part of a claim: what it requires, and whether that is met

# verdict -> (answer to "holds here?", phrase after the claim's name)
ANSWERS = {
    "holds": ("yes", "holds"),
    "holds where testable": ("yes, where testable", "holds where testable"),
    "does not hold": ("no", "does not hold"),
    "not testable": ("not testable", "is not testable here"),
}


@dataclass(frozen=True)
class ClaimCheck:
    """One claim's verdict in a build: what the paper says, what was measured, and why."""

    claim: str
    paper: str
    measured: str
    holds: bool | None  # None: cannot be tested with this build's data
    reason: str
    partly_untested: bool = False  # holds in the parts that could be tested, others could not be

    @property
    def outcome(self) -> str:
        """The key of :data:`ANSWERS` for this check."""
        if self.holds is None:
            return "not testable"
        if not self.holds:
            return "does not hold"
        return "holds where testable" if self.partly_untested else "holds"

    @property
    def verdict(self) -> str:
        """The answer to the Summary's "holds here?": yes, yes where testable, no, not testable."""
        return ANSWERS[self.outcome][0]

    @property
    def in_words(self) -> str:
        """The verdict as the chapters write it after the claim's name ("C2 does not hold")."""
        return ANSWERS[self.outcome][1]

    def as_row(self) -> dict:
        """The check as a row of the Summary's table (T11)."""
        return {"claim": self.claim, "paper says": self.paper, "this build measured": self.measured,
                "holds here?": self.verdict, "why": self.reason}

    def headline(self, profile: str, short_name: str) -> str:
        """The chapter's bold verdict: '**Verdict (smoke profile): C3 holds**'."""
        return f"**Verdict ({profile} profile): {short_name} {self.in_words}**"


def all_of(values: Iterable[bool | None]) -> bool | None:
    """A part over models: False if it fails in any, None if it can be tested in none."""
    known = [ok for ok in values if ok is not None]
    return None if not known else all(known)


def count_models(per_model: dict[str, bool | None]) -> str:
    """'in 2/3 models', naming the models where the part could not be tested."""
    tested = {model: ok for model, ok in per_model.items() if ok is not None}
    untested = [model for model, ok in per_model.items() if ok is None]
    if not tested:
        return "(not testable in any model)"
    return (f"in {sum(tested.values())}/{len(tested)} models"
            + (f" (not testable in {', '.join(untested)})" if untested else ""))


def part(name: str, ok: bool | None, why_untestable: str) -> Part:
    """A part of a claim, named by what it requires; where it cannot be tested (``ok`` None),
    the name says why."""
    return (name if ok is not None else f"{name} ({why_untestable})"), ok


def claim_from_parts(claim: str, paper: str, measured: str, parts: tuple[Part, ...]) -> ClaimCheck:
    """A claim tested in parts holds when no part fails and at least one could be tested."""
    return ClaimCheck(claim, paper, measured, all_of(ok for _, ok in parts), parts_reason(parts),
                      partly_untested=any(ok is None for _, ok in parts))


def parts_reason(parts: tuple[Part, ...]) -> str:
    """'every part holds', or which parts are not met, which are, and which could not be tested
    (ok None), for a claim tested in parts (each part named by what it requires)."""
    if all(ok is True for _, ok in parts):
        return "every part holds"
    groups = (("not met", False), ("met", True), ("not testable", None))
    named = [(label, [name for name, ok in parts if ok is value]) for label, value in groups]
    return "; ".join(f"{label}: {', '.join(names)}" for label, names in named if names)
