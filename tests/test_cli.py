"""The one ``edgefleet`` command mounts every component."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

from typer.testing import CliRunner


def test_root_help_lists_every_component():
    """The rows of the Commands panel, not words anywhere in the text (the usage line and
    the description already mention "sdk", "agent", "fleet" ...)."""
    exe = shutil.which("edgefleet") or str(
        (__import__("pathlib").Path(sys.executable).parent) / "edgefleet"
    )
    out = subprocess.run(
        [exe, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "100"},
    )
    assert out.returncode == 0, out.stderr
    panel = out.stdout.split("Commands")[1].splitlines()[1:]
    listed = {m.group(1) for line in panel if (m := re.match(r"^│ (\w+) ", line))}
    assert listed == {"sdk", "keys", "agent", "fleet", "hil", "train", "demo", "package"}


def test_missing_extra_names_the_install(monkeypatch):
    """A component whose dependencies are missing is listed with the extra to install."""
    import typer

    from edgefleet import _cli

    monkeypatch.setattr(
        _cli, "_GROUPS", [("fleet", "edgefleet._no_such_module", "edgefleet[fleet]", "x")]
    )
    monkeypatch.setattr(_cli, "app", typer.Typer())
    _cli.app.callback()(lambda: None)
    _cli._register("fleet")
    result = CliRunner().invoke(_cli.app, ["fleet"])
    assert result.exit_code == 2
    assert "pip install 'edgefleet[fleet]'" in result.output


def test_keys_new_writes_a_pair(tmp_path, monkeypatch):
    import typer

    from edgefleet import _cli

    # a private app: the module-level one is shared with other tests
    monkeypatch.setattr(_cli, "app", typer.Typer())
    _cli._register("keys")
    app = _cli.app
    result = CliRunner().invoke(app, ["keys", "new", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "edgefleet.key").exists() and "key id" in result.output
    again = CliRunner().invoke(app, ["keys", "new", "--out", str(tmp_path)])
    assert again.exit_code == 1 and "refusing to overwrite" in again.output
