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


class Busy(BoxwiseError):
    """The database stayed locked by other writers for the whole busy timeout. Nothing was
    changed: the same call can simply be tried again."""


# Roles are enforced with the built-in PermissionError so callers need no Boxwise import to catch it.
PermissionDenied = PermissionError
