"""Domain errors. Each carries a message a user can act on; pages and the CLI show it as is."""
from __future__ import annotations


class BoxwiseError(Exception):
    """Base class for errors the user can fix."""


class NotFound(BoxwiseError):
    """A named thing (project, user, image, class, run...) does not exist."""


class Invalid(BoxwiseError):
    """Input that breaks a rule: the message says which rule."""


class Conflict(BoxwiseError):
    """A save based on a stale version, or a lease held by someone else."""


# Roles are enforced with the built-in PermissionError so callers need no Boxwise import to catch it.
PermissionDenied = PermissionError


# `python -m backend` exit codes. 1 is a command's own "problems found" (rejected files, config
# problems); 2 is argparse's usage error; each domain error has its own code after those.
EXIT_INVALID = 3
EXIT_NOT_FOUND = 4
EXIT_CONFLICT = 5
EXIT_PERMISSION = 6


def exit_code(exc: BaseException) -> int:
    """The command-line exit code for a domain error or a refused permission."""
    if isinstance(exc, PermissionError):
        return EXIT_PERMISSION
    if isinstance(exc, NotFound):
        return EXIT_NOT_FOUND
    if isinstance(exc, Conflict):
        return EXIT_CONFLICT
    return EXIT_INVALID
