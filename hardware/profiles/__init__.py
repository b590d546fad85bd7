"""Hardware target profiles: data per board, a validating loader and detection.

This is the bottom layer of edgefleet: it imports nothing of ours, so the SDK, the agent,
the fleet and the trainer can all read the same profiles.

>>> from edgefleet.hardware.profiles import detect_profile, get_profile
>>> get_profile("raspberry-pi-4").runtimes[0].backend
'litert'
"""

from ._catalog import (
    PROFILE_DIR,
    get_profile,
    list_profiles,
    load_profile,
    profile_names,
    read_toml,
)
from ._detect import BoardFacts, Detection, detect, detect_profile, normalize_arch, read_facts
from ._errors import ProfileError
from ._profile import (
    ARCHES,
    BACKEND_OPTION_FIELDS,
    Accelerator,
    Budgets,
    DetectRules,
    Profile,
    RuntimeChoice,
    profile_from_dict,
)

__all__ = [
    "ARCHES",
    "BACKEND_OPTION_FIELDS",
    "PROFILE_DIR",
    "Accelerator",
    "BoardFacts",
    "Budgets",
    "DetectRules",
    "Detection",
    "Profile",
    "ProfileError",
    "RuntimeChoice",
    "detect",
    "detect_profile",
    "get_profile",
    "list_profiles",
    "load_profile",
    "normalize_arch",
    "profile_from_dict",
    "profile_names",
    "read_facts",
    "read_toml",
]
