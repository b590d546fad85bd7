"""Loading the bundled profile files (one TOML per target) and looking them up by name."""

from __future__ import annotations

import functools
import logging
import tomllib
from pathlib import Path
from typing import Any

from ._errors import ProfileError
from ._profile import Profile, profile_from_dict

__all__ = [
    "PROFILE_DIR",
    "get_profile",
    "list_profiles",
    "load_profile",
    "profile_names",
    "read_toml",
]

log = logging.getLogger(__name__)

PROFILE_DIR = Path(__file__).parent


def read_toml(path: Path, kind: str, error: type[Exception] = ProfileError) -> dict[str, Any]:
    """The parsed TOML file ``path`` (a ``kind`` file, e.g. "profile"); ``error`` naming the
    file when it cannot be read or is not TOML (the HIL matrix files use it too)."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise error(f"{path}: cannot read {kind} file: {e}") from e
    except tomllib.TOMLDecodeError as e:
        raise error(f"{path.name}: not valid TOML: {e}") from e


def load_profile(path: str | Path) -> Profile:
    """Read and validate one profile file; the file's stem must equal its ``name``."""
    path = Path(path)
    data = read_toml(path, "profile")
    profile = profile_from_dict(data, path.name)
    if profile.name != path.stem:
        raise ProfileError(
            f"{path.name}: name: expected {path.stem!r} (the file name), got {profile.name!r}"
        )
    return profile


@functools.cache
def _bundled() -> dict[str, Profile]:
    found = {p.stem: load_profile(p) for p in sorted(PROFILE_DIR.glob("*.toml"))}
    log.debug("loaded %d target profiles from %s", len(found), PROFILE_DIR)
    return found


def profile_names() -> list[str]:
    return list(_bundled())


def list_profiles() -> list[Profile]:
    """Every bundled target profile, sorted by name."""
    return list(_bundled().values())


def get_profile(name: str) -> Profile:
    """The bundled profile called ``name`` (e.g. ``"raspberry-pi-4"``)."""
    try:
        return _bundled()[name]
    except KeyError:
        raise ProfileError(
            f"unknown target profile {name!r}; expected one of {profile_names()}"
        ) from None
