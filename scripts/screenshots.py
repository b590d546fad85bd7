"""Regenerate the README's dashboard screenshots (docs/screenshots/*.png).

They are taken by the browser tests themselves (tests/fleet/test_dashboard_browser.py, real
fleet + Mosquitto + headless Chromium), so every picture shows a state a test asserted:

    .venv/bin/python scripts/screenshots.py [--out docs/screenshots]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = ap.parse_args()
    env = {**os.environ, "EDGEFLEET_SCREENSHOTS": str(args.out.resolve())}
    test = "tests/fleet/test_dashboard_browser.py"
    rc = subprocess.call([sys.executable, "-m", "pytest", "-q", test], cwd=ROOT, env=env)
    for p in sorted(args.out.glob("*.png")):
        name = p.relative_to(ROOT) if p.is_relative_to(ROOT) else p
        print(f"{name}  {p.stat().st_size // 1024} KiB")
    return rc


if __name__ == "__main__":
    sys.exit(main())
