"""The one rule for every path a user supplies: `confine(user_path, actor, purpose)`.

Import sources, image references inside annotation files, record sets, label maps, paths in
configs, model folders and export targets all go through it before anything is opened,
listed or checked for existence:

- admins (the command line acts as one) may use any path on the server, and URLs;
- everyone else only paths that resolve — symlinks followed — inside the data folder or a
  folder the server's owner allowed (`server_settings.allowed_paths`);
- URLs (`gs://…`) otherwise only where README names them (the TFRecord browser's record sets
  and label maps) and only for roles with `read_urls` (reviewers).

A refusal is a PermissionError built from the typed text alone, so it reads the same whether
or not the file exists.
"""
from __future__ import annotations

from pathlib import Path

from backend import server_settings, settings
from backend.auth import can
from backend.errors import Invalid
from backend.formats import remote

# purpose → what the user was trying to do, for the refusal
PURPOSES = {
    "import": "import from",
    "image": "read the image",
    "records": "open the record set",
    "label_map": "read the label map",
    "config": "use the config path",
    "checkpoint": "start from the checkpoint",
    "model": "register the model folder",
    "export_target": "write a dataset version to",
}
# What README allows as URLs: record sets and label maps opened in the TFRecord browser.
URL_PURPOSES = {"records", "label_map"}
# Files in the data folder no page shows to anyone: the database (password and session hashes)
# and the server settings.
PRIVATE_FILES = ("boxwise.db", "boxwise.db-wal", "boxwise.db-shm", "boxwise.db-journal",
                 server_settings.SETTINGS_FILE)


def allowed_roots() -> list[Path]:
    """The folders a non-admin's paths must resolve into: the data folder, then allowed ones."""
    return [settings.data_dir().resolve(), *server_settings.allowed_paths()]


def confine(user_path: str | Path, actor: dict | None, purpose: str,
            roots: list[Path] | None = None) -> Path | remote.RemoteFile:
    """`user_path` resolved (absolute, symlinks followed) when `actor` may use it for `purpose`
    (a key of PURPOSES); a URL comes back as a `remote.RemoteFile`. Raises PermissionError
    otherwise, and Invalid for text that is no path at all. `roots`: `allowed_roots()`,
    when the caller checks many paths."""
    verb = PURPOSES[purpose]
    text = str(user_path).strip()
    if not text:
        raise Invalid("no path given")
    if "\x00" in text:
        raise Invalid("a path cannot contain a NUL character")
    who = f"{actor.get('username')} ({actor.get('role')})" if actor else "anonymous"
    if remote.is_url(text):
        if can(actor, "server_paths") or (purpose in URL_PURPOSES and can(actor, "read_urls")):
            return remote.as_path(text)
        if purpose in URL_PURPOSES:
            raise PermissionError(f"{who} may not open URLs (reviewers and admins may)")
        raise PermissionError(f"{who} may not {verb} a URL: only record sets and label maps in "
                              "the TFRecord browser may be URLs")
    try:
        resolved = Path(text).expanduser().resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # a symlink loop, a name too long
        raise Invalid(f"not a usable path ({type(exc).__name__})") from None
    if can(actor, "server_paths"):
        return resolved
    private = {settings.data_dir().resolve() / name for name in PRIVATE_FILES}
    if resolved not in private and any(resolved.is_relative_to(root) for root in roots or allowed_roots()):
        return resolved
    raise PermissionError(f"{who} may not {verb} {_short(text)}: only paths inside the data folder "
                          "(or a folder the server's owner allowed) can be used")


def allows(actor: dict | None, path: str | Path, purpose: str) -> bool:
    """Whether `confine` would accept `path` (for filters that skip what they may not see)."""
    return rule(actor, purpose)(path)


def rule(actor: dict | None, purpose: str):
    """`allows` for one actor and purpose as a function of the path, reading the allowed
    folders once (an import checks every image file it looks at)."""
    roots = allowed_roots()

    def allowed(path: str | Path) -> bool:
        try:
            confine(path, actor, purpose, roots)
        except (PermissionError, Invalid):
            return False
        return True
    return allowed


def confine_pattern(pattern: str, actor: dict | None, purpose: str = "records") -> str:
    """A comma-separated record-set pattern (globs, `name@N`, URLs) with each part confined;
    returned with local parts resolved."""
    parts = [part.strip() for part in str(pattern).split(",") if part.strip()]
    if not parts:
        raise Invalid("no TFRecord path given")
    return ",".join(str(confine(part, actor, purpose)) for part in parts)


def _short(text: str) -> str:
    return repr(text if len(text) <= 200 else text[:200] + "…")
