"""The errors a user can fix (a name, a file, a parameter), as opposed to bugs.

The ``vitphase`` command prints these as one message on stderr with exit status 2, without a
traceback (``vitphase --debug ...`` shows it). Every user error derives from :class:`VitphaseError`.
"""
from __future__ import annotations


class VitphaseError(Exception):
    """Base class of the project's user errors."""


class ParameterError(VitphaseError, TypeError, ValueError):
    """A study parameter of the wrong type or value. It is also a TypeError and a ValueError, the
    classes parameter checks raised before this one existed, so ``except`` clauses keep working."""


class ProfileNotFoundError(VitphaseError, FileNotFoundError):
    """No profile of that name in ``profiles/``."""


def user_errors() -> tuple[type[BaseException], ...]:
    """The exception classes the command reports as a message rather than a traceback."""
    return (VitphaseError,)
