"""Package discovery for the folder -> ``edgefleet.*`` namespace mapping.

Metadata lives in pyproject.toml; setuptools cannot express "map the folder sdk/ to
edgefleet.sdk and include all its subpackages" declaratively, so it is computed here.
"""

from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).parent
MAPPING = {
    "edgefleet": "edgefleet",
    "edgefleet.sdk": "sdk",
    "edgefleet.trainer": "trainer",
    "edgefleet.device_agents": "device_agents",
    "edgefleet.fleet": "fleet",
    "edgefleet.hardware": "hardware",
}
DATA = ["*.toml", "*.json", "*.html", "*.js", "*.css", "*.ini", "*.mako", "*.service", "*.npy"]


def _packages() -> list[str]:
    found = []
    for name, folder in MAPPING.items():
        for init in sorted((ROOT / folder).rglob("__init__.py")):
            rel = init.parent.relative_to(ROOT / folder)
            found.append(".".join([name, *rel.parts]) if rel.parts else name)
    return found


setup(
    packages=_packages(),
    package_dir=MAPPING,
    package_data={"": DATA},
)
