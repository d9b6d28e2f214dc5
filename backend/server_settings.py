"""Server settings only the server's owner sets: external runners and extra allowed folders.

They come from two places, read on every call (no restart needed):
- `data/settings.json`, written by `python -m backend settings ...` (the command line acts as a
  local admin; no page writes this file), e.g.
  `{"runners": {"tf215": {"python": "/opt/tf215/bin/python",
                          "script": "/opt/models/research/object_detection/model_main_tf2.py"}},
    "allowed_paths": ["/srv/datasets"]}`;
- the environment: `BOXWISE_RUNNERS` (the same `runners` JSON object; its names win over the
  file's) and `BOXWISE_ALLOWED_PATHS` (folders separated by `os.pathsep`).

A runner is an interpreter and a TF OD API `model_main_tf2.py`; a browser only ever picks one
by name. A runner's files must lie outside the data folder, where everything users upload
lives, so nothing a user uploaded can become a runner.
"""
from __future__ import annotations

import ipaddress
import json
import os
import re
from pathlib import Path

from backend import atomic, settings
from backend.errors import Invalid, NotFound

SETTINGS_FILE = "settings.json"
_RUNNER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def settings_path() -> Path:
    return settings.data_dir() / SETTINGS_FILE


def _read_file() -> dict:
    path = settings_path()
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Invalid(f"{path} is not valid JSON ({exc}); fix or remove it") from None
    if not isinstance(loaded, dict):
        raise Invalid(f"{path} must hold a JSON object")
    return loaded


def _check_runner(name: str, entry) -> dict:
    if not isinstance(name, str) or not _RUNNER_NAME.match(name):
        raise Invalid(f"runner name {name!r}: 1–64 letters, digits, '.', '_' or '-'")
    if not isinstance(entry, dict) or not isinstance(entry.get("python"), str) \
            or not isinstance(entry.get("script"), str):
        raise Invalid(f"runner {name!r} needs \"python\" and \"script\" paths")
    data = settings.data_dir().resolve()
    out = {}
    for key in ("python", "script"):
        path = Path(entry[key])
        if not path.is_absolute():
            raise Invalid(f"runner {name!r}: {key} must be an absolute path, not {entry[key]!r}")
        if path.resolve().is_relative_to(data):
            raise Invalid(f"runner {name!r}: {key} {entry[key]!r} is inside the data folder, where "
                          "uploads live; install the runner elsewhere")
        out[key] = str(path)
    return out


def runners() -> dict[str, dict]:
    """`{name: {"python", "script"}}` of the configured external runners (file, then environment)."""
    found = dict(_read_file().get("runners") or {})
    raw = os.environ.get("BOXWISE_RUNNERS", "").strip()
    if raw:
        try:
            from_env = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise Invalid(f"BOXWISE_RUNNERS is not valid JSON: {exc}") from None
        if not isinstance(from_env, dict):
            raise Invalid("BOXWISE_RUNNERS must be a JSON object of runner names")
        found.update(from_env)
    return {name: _check_runner(name, entry) for name, entry in found.items()}


def runner_names() -> list[str]:
    """The configured runners' names, sorted (what the Runs page offers)."""
    return sorted(runners())


def runner(name: str) -> dict:
    """The configured runner `name`, or NotFound naming the ones there are."""
    configured = runners()
    if name not in configured:
        known = ", ".join(sorted(configured)) or "none is configured"
        raise NotFound(f"no external runner {name!r} ({known}); the server's owner adds runners "
                       "with `python -m backend settings runner-add` or BOXWISE_RUNNERS")
    return configured[name]


def trusted_proxies() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """The reverse proxies whose `X-Forwarded-For` header names the client: addresses or
    networks from `data/settings.json`'s `"trusted_proxies"` list and `BOXWISE_TRUSTED_PROXIES`
    (separated by commas or spaces). None by default: the header is then ignored."""
    listed = list(_read_file().get("trusted_proxies") or [])
    listed += re.split(r"[,\s]+", os.environ.get("BOXWISE_TRUSTED_PROXIES", "").strip())
    networks = []
    for entry in listed:
        if not isinstance(entry, str) or not entry.strip():
            continue
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise Invalid(f"trusted proxy {entry!r} is not an IP address or network "
                          "(BOXWISE_TRUSTED_PROXIES, settings.json)") from None
    return networks


def allowed_paths() -> list[Path]:
    """Folders besides the data folder that every signed-in user's paths may point into."""
    listed = list(_read_file().get("allowed_paths") or [])
    listed += [p for p in os.environ.get("BOXWISE_ALLOWED_PATHS", "").split(os.pathsep) if p.strip()]
    return [Path(p).expanduser().resolve() for p in listed if isinstance(p, str)]


# ---------------------------------------------------------------- changes (admins: the CLI)


def _require(actor: dict) -> None:
    from backend.auth import require  # auth needs the database, which needs settings: import late
    require(actor, "configure_server")


def _write(actor: dict, change) -> dict:
    _require(actor)
    current = _read_file()
    change(current)
    atomic.write_json(settings_path(), current)
    return current


def set_runner(actor: dict, name: str, python: str, script: str) -> dict:
    """Add or replace external runner `name` (absolute paths outside the data folder)."""
    _require(actor)
    checked = _check_runner(name, {"python": python, "script": script})
    return _write(actor, lambda s: s.setdefault("runners", {}).__setitem__(name, checked))


def remove_runner(actor: dict, name: str) -> dict:
    def change(current):
        if name not in (current.get("runners") or {}):
            raise NotFound(f"no runner {name!r} in {settings_path()}")
        del current["runners"][name]
    return _write(actor, change)


def allow_path(actor: dict, folder: str) -> dict:
    """Add `folder` to the folders every user's paths may point into."""
    _require(actor)
    path = Path(folder).expanduser().resolve()
    if not path.is_dir():
        raise NotFound(f"{folder} is not a folder")
    return _write(actor, lambda s: s.setdefault("allowed_paths", []).append(str(path))
                  if str(path) not in s.get("allowed_paths", []) else None)


def disallow_path(actor: dict, folder: str) -> dict:
    _require(actor)
    path = str(Path(folder).expanduser().resolve())

    def change(current):
        listed = current.get("allowed_paths") or []
        if path not in listed:
            raise NotFound(f"{path} is not an allowed folder")
        listed.remove(path)
    return _write(actor, change)
