"""Beyond the paper: the open questions the paper leaves (its C6), answered on the variant zoo.

Each module takes one question, builds its tables from the variant study's cached analyses and
returns :class:`~.answer.Answer` s (answered yes, answered no, inconclusive) whose differences are
judged against the seed-to-seed spread (:mod:`.headline`):

* :mod:`.depth`: does depth hurt at fixed width; does less MLP capacity cost anything;
* :mod:`.pooling`: [CLS] or average pooling;
* :mod:`.positional`: positional-encoding strength, retrained;
* :mod:`.hub`: the [CLS] hub removed or forced;
* :mod:`.training`: the monitor logs through training, and an early-stopping signal;
* :mod:`.noise`: the ISI under other decoder budgets, and beside linear CKA.

:func:`all_answers` collects them for the Summary's table C6.
"""
from . import depth, hub, noise, pooling, positional, training
from .answer import VERDICTS, Answer
from .context import Context
from .headline import HEADLINE, LABELS, compare, headline_metrics, headline_table, seed_spread, spread_table

CHAPTERS = (depth, pooling, positional, hub, training, noise)  # in the book's order


def all_answers(study) -> list[Answer]:
    """Every question's answer, in the book's order, from a study's cached tables."""
    ctx = Context(study)
    return [answer for chapter in CHAPTERS for answer in chapter.answers(ctx)]


__all__ = ["depth", "hub", "noise", "pooling", "positional", "training", "VERDICTS", "Answer", "Context",
           "HEADLINE", "LABELS", "compare", "headline_metrics", "headline_table", "seed_spread",
           "spread_table", "CHAPTERS", "all_answers"]
