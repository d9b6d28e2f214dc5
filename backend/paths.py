"""The one rule for every path a user supplies: `confine(user_path, actor, purpose)`.

Import sources, image references inside annotation files, record sets, label maps, paths in
configs, model folders and export targets all go through it before anything is opened,
listed or checked for existence:

- the command line (`auth.CLI_ACTOR`, an operator on the machine) may use any path on the
  server, and URLs;
- every signed-in user, admins included, only paths that resolve (symlinks and `..` followed,
  relative paths from the data folder, `~` not expanded) inside the data folder, or, to read,
  inside a folder the server's operator allowed (`server_settings.allowed_paths`: read-only, so
  export targets must lie in the data folder);
- the database and the server settings file are refused to every signed-in user, and an upload
  folder under `data/uploads/` opens only for the user who uploaded it (`mark_owner`);
- URLs (`gs://…`) only where README names them (the TFRecord browser's record sets and label
  maps) and only for roles with `read_urls` (reviewers, admins).

A refusal is a PermissionError built from the typed text and the configured folders alone, so
it reads the same whether or not the file exists. Globs are confined as typed (a `..` after a
wildcard resolves lexically), and then everything they reach on disk: each file a record set,
an input glob or a checkpoint prefix matches and each entry below a model or import folder
(`confine_matches`, `record_browser.confined_set`), and each image an annotation file names
(the importers' `allowed` rule), so a symlink inside the data folder leads nowhere outside.
"""
from __future__ import annotations

import glob
import json
import os
import re
from pathlib import Path

from backend import atomic, server_settings, settings
from backend.auth import can, is_local
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
    "progress": "write batch-prediction progress to",
}
# Purposes that write: only into the data folder (the operator's extra folders are read-only).
WRITE_PURPOSES = {"export_target", "progress"}
# What README allows as URLs: record sets and label maps opened in the TFRecord browser.
URL_PURPOSES = {"records", "label_map"}
# Files in the data folder no page shows to anyone: the database (password and session hashes)
# and the server settings.
PRIVATE_FILES = ("boxwise.db", "boxwise.db-wal", "boxwise.db-shm", "boxwise.db-journal",
                 server_settings.SETTINGS_FILE)
# The file naming an upload folder's owner (upload names starting with "." are refused, so no
# upload can replace it).
OWNER_FILE = ".owner"


def allowed_roots(purpose: str | None = None) -> list[Path]:
    """The folders a signed-in user's paths must resolve into: the data folder, then the
    operator's allowed folders (not for a purpose in WRITE_PURPOSES)."""
    data = settings.data_dir().resolve()
    return [data] if purpose in WRITE_PURPOSES else [data, *server_settings.allowed_paths()]


def confine(user_path: str | Path, actor: dict | None, purpose: str,
            roots: list[Path] | None = None, base: str | Path | None = None) -> Path | remote.RemoteFile:
    """`user_path` resolved (absolute, symlinks followed) when `actor` may use it for `purpose`
    (a key of PURPOSES); a URL comes back as a `remote.RemoteFile`. Raises PermissionError
    otherwise, and Invalid for text that is no path at all. `roots`: `allowed_roots(purpose)`,
    when the caller checks many paths; `base`: where a relative path is read from, as
    `absolute` takes it."""
    verb = PURPOSES[purpose]
    text = str(user_path).strip()
    if not text:
        raise Invalid("no path given")
    if "\x00" in text:
        raise Invalid("a path cannot contain a NUL character")
    who = f"{actor.get('username')} ({actor.get('role')})" if actor else "anonymous"
    if remote.is_url(text):
        if is_local(actor) or (purpose in URL_PURPOSES and can(actor, "read_urls")):
            return remote.as_path(text)
        if purpose in URL_PURPOSES:
            raise PermissionError(f"{who} may not open URLs (reviewers and admins may)")
        raise PermissionError(f"{who} may not {verb} a URL: only record sets and label maps in "
                              "the TFRecord browser may be URLs")
    try:
        resolved = Path(absolute(text, actor, base=base)).resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # a symlink loop, a name too long
        raise Invalid(f"not a usable path ({type(exc).__name__})") from None
    if is_local(actor):
        return resolved
    data = settings.data_dir().resolve()
    roots = roots if roots is not None else allowed_roots(purpose)
    if resolved in {data / name for name in PRIVATE_FILES}:
        raise PermissionError(f"{who} may not {verb} {quoted(text)}: the database and the server "
                              "settings are never opened from the browser")
    if resolved.is_relative_to(data / "uploads") and not _owns_upload(actor, resolved, data / "uploads"):
        raise PermissionError(f"{who} may not {verb} {quoted(text)}: an upload opens only for the "
                              "user who uploaded it")
    if any(resolved.is_relative_to(root) for root in roots):
        return resolved
    raise PermissionError(f"{who} may not {verb} {quoted(text)}: only paths inside {_roots_text(roots)} "
                          "can be used from the browser")


def _roots_text(roots: list[Path]) -> str:
    """The allowed roots in words: the data folder by name (its place on the server is the
    operator's business), the operator's folders by path."""
    data = settings.data_dir().resolve()
    extra = [str(root) for root in roots if root != data]
    if not extra:
        return "the data folder"
    if data not in roots:  # a caller's own folders (batch prediction's progress files)
        return "the folder" + ("s " if len(extra) > 1 else " ") + ", ".join(extra)
    return "the data folder or the allowed folder" + ("s " if len(extra) > 1 else " ") + ", ".join(extra)


def upload_entry(path: Path, uploads: Path) -> Path | None:
    """The upload folder under `uploads` that `path` lies in (`uploads/<kind>/<name>`, or
    `uploads/.import-<token>`), or None for `uploads` and its kind folders themselves."""
    parts = path.relative_to(uploads).parts
    depth = 1 if parts and parts[0].startswith(".") else 2
    return uploads.joinpath(*parts[:depth]) if len(parts) >= depth else None


def mark_owner(folder: Path, actor: dict | None) -> None:
    """Record `actor` as the owner of the new upload folder `folder` (under `data/uploads/`)."""
    atomic.write_bytes(Path(folder) / OWNER_FILE, json.dumps(
        {"user_id": actor.get("id") if actor else None,
         "username": actor.get("username") if actor else None}).encode("utf-8"))


def upload_owner(folder: Path) -> int | None:
    """The user id `mark_owner` recorded for an upload folder, None when there is none."""
    try:
        owner = json.loads((Path(folder) / OWNER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return owner.get("user_id") if isinstance(owner, dict) else None


def _owns_upload(actor: dict | None, resolved: Path, uploads: Path) -> bool:
    entry = upload_entry(resolved, uploads.resolve())
    if entry is None or not actor or actor.get("id") is None:
        return False
    return upload_owner(entry) == actor["id"]


def allows(actor: dict | None, path: str | Path, purpose: str) -> bool:
    """Whether `confine` would accept `path` (for filters that skip what they may not see)."""
    return rule(actor, purpose)(path)


def rule(actor: dict | None, purpose: str):
    """`allows` for one actor and purpose as a function of the path, reading the allowed
    folders once (an import checks every image file it looks at)."""
    roots = allowed_roots(purpose)

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


MAX_CONFINED_ENTRIES = 1_000_000


def confine_matches(pattern: str, actor: dict | None, purpose: str,
                    suffixes: tuple[str, ...] | None = None) -> None:
    """Confine a comma-separated pattern (as `confine_pattern`) and everything it reaches on
    disk: each file or folder a glob part matches, and every entry below a matched folder
    (symlinks followed), so a symlink inside the data folder cannot lead a glob, a
    checkpoint prefix or a model folder outside. PermissionError naming the first entry
    refused; Invalid beyond MAX_CONFINED_ENTRIES entries. `suffixes`: below folders, only
    files with these (lower-case) suffixes are checked (an import's annotation files; its
    images are checked one by one as they are read). The command line is not confined."""
    if is_local(actor):
        return
    roots = allowed_roots(purpose)
    seen = 0
    for part in (p.strip() for p in str(pattern).split(",")):
        if not part:
            continue
        confine(part, actor, purpose, roots)
        if remote.is_url(part):
            continue
        for match in sorted(glob.glob(absolute(part, actor, pattern=True))):
            confine(match, actor, purpose, roots)
            if not os.path.isdir(match):
                continue
            visited = {os.path.realpath(match)}
            for folder, dirs, files in os.walk(match, followlinks=True):
                for name in dirs + ([f for f in files if f.lower().endswith(suffixes)] if suffixes else files):
                    seen += 1
                    if seen > MAX_CONFINED_ENTRIES:
                        raise Invalid(f"{quoted(part)} reaches more than {MAX_CONFINED_ENTRIES:,} files and "
                                      "folders")
                    confine(os.path.join(folder, name), actor, purpose, roots)
                # each real folder once: a symlink back up (a loop) is not walked again
                real = [(d, os.path.realpath(os.path.join(folder, d))) for d in dirs]
                dirs[:] = [d for d, r in real if r not in visited]
                visited.update(r for _, r in real)


def quoted(value: str, limit: int = 200) -> str:
    """A user-given string quoted for a message, cut to `limit` characters (with its length),
    so a 10 MB field cannot become a 10 MB error message."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}"[:-1] + f"…' ({len(value):,} characters)"


def absolute(user_path: str | Path, actor: dict | None, pattern: bool = False,
             base: str | Path | None = None) -> str:
    """`user_path` as the file system should read it for `actor`, not yet resolved: a relative
    path from the data folder for every signed-in user (the folder pages show paths relative
    to), from the working folder for the command line, which alone has `~` expanded; from
    `base` for both when given (a saved config's paths: the data folder).
    `pattern`: `user_path` is a glob, so the folder's name goes in escaped."""
    text = str(user_path).strip()
    if is_local(actor):
        text = os.path.expanduser(text)
        if base is None:
            return text
    if remote.is_url(text) or os.path.isabs(text):
        return text
    folder = str(base if base is not None else settings.data_dir())
    return os.path.join(glob.escape(folder) if pattern else folder, text)


# ---------------------------------------------------------------- showing paths


def shown(actor: dict | None, path: str | Path | None) -> str:
    """`path` as a page shows it to `actor`: whole for admins (and the command line), relative
    to the data folder for everyone else (where the data folder lies on the server is the
    operator's business); a path elsewhere (an allowed folder, a URL) is shown as it is."""
    return shown_in(actor, "" if path is None else str(path))


def shown_in(actor: dict | None, text: str) -> str:
    """`text` (a message, a log, a config snippet) with every absolute path inside the data
    folder made relative to it for non-admins: `/srv/boxwise/exports/v1` → `exports/v1`, the
    folder itself → `.`."""
    if not text or is_local(actor) or (actor or {}).get("role") == "admin":
        return text
    data = settings.data_dir().resolve()
    names = {str(data), os.path.abspath(os.environ.get("BOXWISE_DATA", "data"))}
    for name in sorted(names, key=len, reverse=True):
        text = re.sub(re.escape(name) + r"(/+|(?![\w.-]))", lambda m: "" if m.group(1) else ".", text)
    return text
